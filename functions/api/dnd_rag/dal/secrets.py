"""Secrets (and the price override) for the deployed stack: read from SSM Parameter Store at cold start.

Locally the same values come from the environment / ``.env``; nothing here runs then. A secret
whose parameter name is empty is not read (Chroma may run without auth: the template then passes
an empty ``CHROMA_API_KEY_PARAMETER``); a named parameter that cannot be read fails the cold start
naming its variable.
"""

from __future__ import annotations

from collections.abc import Mapping

from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

from dnd_rag.settings import ConfigError

# environment variable holding the secret -> variable naming its SSM parameter
SECRET_PARAMETERS = {
    "OPENAI_API_KEY": "OPENAI_API_KEY_PARAMETER",
    "CHROMA_API_KEY": "CHROMA_API_KEY_PARAMETER",
    "ALERT_WEBHOOK_URL": "ALERT_WEBHOOK_URL_PARAMETER",  # webhook URLs usually carry a secret token
    # Not a secret: a price file (pricing.py) that replaces the shipped one without a release; a plain
    # String or a SecureString, read like the secrets (a String ignores the decryption flag).
    "PRICES_JSON": "PRICES_PARAMETER",
}


def with_secrets(environ: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``environ`` with each secret filled from SSM when only its parameter name is set."""
    resolved = dict(environ)
    for variable, parameter_variable in SECRET_PARAMETERS.items():
        name = environ.get(parameter_variable)
        if name and not environ.get(variable):
            try:
                resolved[variable] = str(parameters.get_parameter(name, decrypt=True, max_age=3600))
            except GetParameterError as exc:
                raise ConfigError(f"{parameter_variable}: SSM parameter {name} could not be read ({exc})") from None
    return resolved


def read_secret(variable: str, parameter_name: str) -> str:
    """One SecureString, read when it is needed rather than at cold start (the reconciliation's admin
    key: only the scheduled job uses it, so no query's cold start pays for it)."""
    try:
        return str(parameters.get_parameter(parameter_name, decrypt=True, max_age=3600))
    except GetParameterError as exc:
        raise ConfigError(f"{variable}: SSM parameter {parameter_name} could not be read ({exc})") from None
