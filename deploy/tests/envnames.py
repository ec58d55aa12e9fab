"""The environment variables each of our services reads: the names their pydantic-settings classes accept."""

from __future__ import annotations

from pydantic import AliasChoices
from pydantic_settings import BaseSettings


def env_names(settings: type[BaseSettings]) -> set[str]:
    """Every variable name `settings` reads from the environment (prefix + field, or the field's aliases)."""
    prefix = str(settings.model_config.get("env_prefix", "")).upper()
    names: set[str] = set()
    for field, info in settings.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(c.upper() for c in alias.choices if isinstance(c, str) and c.upper() == c)
        elif isinstance(alias, str):
            names.add(alias.upper())
        else:
            names.add(prefix + field.upper())
    return names


def ml_service_env() -> set[str]:
    from ml_service.settings import Settings

    return env_names(Settings)


def backend_env() -> set[str]:
    from app.core.config import Settings

    return env_names(Settings)


#: which settings class reads the environment of a container, by image or compose service name
SERVICES = {"ml-service": ml_service_env, "backend": backend_env}
