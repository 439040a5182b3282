""":class:`ConfigModel`: the base of typed config sections; an unknown key is an error that
lists the valid keys and guesses the one meant."""

from __future__ import annotations

from typing import Any, Self

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    ModelWrapValidatorHandler,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails, InitErrorDetails

from framework.config.keys import reraisable, unknown_key_error, unknown_key_message

__all__ = ["ConfigModel"]


class ConfigModel(BaseModel):
    """A config section: unknown keys are refused (``extra="forbid"``), and the error says
    ``unknown key 'prot' (did you mean 'port'?); valid: host, port, timeout``, located at the
    key, so :meth:`~framework.config.Config.scan` names its file and line (or env var).

    A subclass that sets ``extra`` to something else keeps pydantic's behaviour. Floats must
    be finite (``allow_inf_nan=False``): ``.inf`` or ``nan`` is refused at its key.
    """

    # Finite floats only: ``timeout: .inf`` (or ``APP_..._TIMEOUT=inf``) passed ``gt=0`` and
    # then failed every request; ``nan`` passes any field without a bound.
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @model_validator(mode="wrap")
    @classmethod
    def _explain_unknown_keys(cls, data: Any, handler: ModelWrapValidatorHandler[Self]) -> Self:
        # Let pydantic decide what is extra (aliases, validate_by_name...); only the wording of
        # its "Extra inputs are not permitted" changes, every other error is kept as it is.
        try:
            return handler(data)
        except ValidationError as exc:
            errors = exc.errors(include_url=False)
            if not any(_is_own_extra(error) for error in errors):
                raise
            valid = _input_names(cls)
            raise ValidationError.from_exception_data(
                exc.title, [_reword(error, valid) for error in errors]
            ) from None


def _is_own_extra(error: ErrorDetails) -> bool:
    # A nested section rewords its own extras; only the keys of this level are left here.
    return error["type"] == "extra_forbidden" and len(error["loc"]) == 1


def _reword(error: ErrorDetails, valid: list[str]) -> InitErrorDetails:
    if _is_own_extra(error):
        name = str(error["loc"][0])
        return unknown_key_error(name, error.get("input"), unknown_key_message(name, valid))
    return reraisable(error)


def _input_names(model: type[BaseModel]) -> list[str]:
    """The keys ``model`` accepts as input: aliases, and names unless only aliases are."""
    config = model.model_config
    by_name = bool(config.get("validate_by_name") or config.get("populate_by_name"))
    names: set[str] = set()
    for name, field in model.model_fields.items():
        aliases: list[str] = []
        alias = field.validation_alias or field.alias
        if isinstance(alias, str):
            aliases.append(alias)
        elif isinstance(alias, AliasChoices):
            aliases.extend(choice for choice in alias.choices if isinstance(choice, str))
        names.update(aliases)
        if by_name or not aliases:
            names.add(name)
    return sorted(names)
