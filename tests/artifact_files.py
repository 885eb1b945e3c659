"""Tests that damage or remove a model version's files do it through the storage API, as an
operator or a failing disk or bucket would: the same helpers work on a local folder and on
object storage."""

from __future__ import annotations

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from mfplatform.registry.artifacts import artifact_name, delete_folder
from mfplatform.registry.models import ModelVersion


def read_bytes(version: ModelVersion, filename: str) -> bytes:
    with default_storage.open(artifact_name(version, filename), "rb") as stream:
        return stream.read()


def replace_bytes(version: ModelVersion, filename: str, content: bytes) -> None:
    name = artifact_name(version, filename)
    default_storage.delete(name)
    assert default_storage.save(name, ContentFile(content)) == name


def flip_a_byte(version: ModelVersion, filename: str) -> None:
    raw = bytearray(read_bytes(version, filename))
    raw[len(raw) // 2] ^= 0xFF
    replace_bytes(version, filename, bytes(raw))


def delete_file(version: ModelVersion, filename: str) -> None:
    default_storage.delete(artifact_name(version, filename))


def delete_files(version: ModelVersion) -> None:
    delete_folder(version.artifact)


def exists(version: ModelVersion, filename: str) -> bool:
    return default_storage.exists(artifact_name(version, filename))
