from django.apps import AppConfig


class TrainingConfig(AppConfig):
    name = "mfplatform.training"
    label = "training"
