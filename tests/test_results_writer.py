"""benchmarks.common.write_section: a benchmark rewrites its own block of RESULTS.md only."""

from benchmarks.common import write_section

FILE = """# Benchmark results

<!-- pipeline:start -->
## Training pipeline

<!-- pipeline-10M:start -->
### 10M, old run
<!-- pipeline-10M:end -->

A note written by hand.

<!-- pipeline-4M:start -->
### 4M run
<!-- pipeline-4M:end -->

### Streaming build: before and after
<!-- pipeline:end -->

<!-- ingest:start -->
## Ingestion
<!-- ingest:end -->
"""


def test_a_subsection_replaces_only_itself(tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text(FILE)
    write_section("pipeline-10M", "### 10M, new run", path, parent="pipeline")
    assert path.read_text() == FILE.replace("### 10M, old run", "### 10M, new run")


def test_a_new_subsection_goes_at_the_end_of_its_parent(tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text(FILE)
    write_section("pipeline-1M", "### 1M run", path, parent="pipeline")
    text = path.read_text()
    block = "\n<!-- pipeline-1M:start -->\n### 1M run\n<!-- pipeline-1M:end -->\n"
    assert text.replace(block, "") == FILE
    assert text.index("### Streaming build") < text.index("### 1M run") < text.index(
        "<!-- pipeline:end -->")


def test_a_section_without_parent_is_appended_and_then_replaced(tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text(FILE)
    write_section("warm_start", "## Warm start, first", path)
    write_section("warm_start", "## Warm start, second", path)
    text = path.read_text()
    assert text.startswith(FILE.rstrip()) and text.count("## Warm start") == 1
    assert "## Warm start, second" in text
