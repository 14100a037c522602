"""Compatibility levels, modes and compatibility checks in the document (app/web/registry.py).

Levels are the seven of :class:`~onepipe.schemas.compatibility.Compatibility` (read
case-insensitively; the document names the canonical upper-case spelling). Errors:
40408 no subject-level config, 42203 invalid level, 42204 invalid mode.
"""

from __future__ import annotations

from typing import Any

from onepipe.app.web.openapi.base import JSON, REGISTRY, body, error, flag, operation, ref
from onepipe.app.web.openapi.registry import (
    SUBJECT,
    VERSION,
    WRITE_BUSY,
    registry_reply,
    schema_body,
)
from onepipe.schemas.compatibility import Compatibility

__all__ = ["PATHS", "SCHEMAS"]

#: Confluent's registry modes; onepipe refuses IMPORT with 42204.
MODES = ("READWRITE", "READONLY", "READONLY_OVERRIDE", "IMPORT")

SCHEMAS: dict[str, Any] = {
    "CompatibilityLevel": {"type": "string", "enum": [level.value for level in Compatibility]},
    "ConfigRequest": {
        "type": "object", "required": ["compatibility"],
        "properties": {"compatibility": ref("CompatibilityLevel")},
    },
    "ConfigUpdated": {
        "type": "object", "required": ["compatibility"],
        "properties": {"compatibility": ref("CompatibilityLevel")},
    },
    "Config": {
        "type": "object", "required": ["compatibilityLevel"],
        "properties": {"compatibilityLevel": ref("CompatibilityLevel")},
    },
    "Mode": {
        "type": "object", "required": ["mode"],
        "properties": {"mode": {"type": "string", "enum": list(MODES)}},
    },
    "CompatibilityCheck": {
        "type": "object", "required": ["is_compatible"],
        "properties": {
            "is_compatible": {"type": "boolean"},
            "messages": {"type": "array", "items": {"type": "string"},
                         "description": "Why not (always present when incompatible; with "
                                        "`verbose` also when compatible)."},
        },
    },
}

_LEVEL_BODY = body(ref("ConfigRequest"), (REGISTRY, JSON))
_MODE_BODY = body(ref("Mode"), (REGISTRY, JSON))
_NO_CONFIG = error("The subject has no level of its own (GET: 40408, DELETE: 40401).")
_READ_ONLY = error("The subject (or the registry) is read-only (42205).")
_BAD_MODE = error("Not a mode, or IMPORT (42204); or not allowed now (42205).")
_DEFAULT_TO_GLOBAL = flag("defaultToGlobal", "Answer the global setting when the subject "
                                             "has none of its own.")
_FORCE = flag("force", "Set IMPORT even though schemas exist.")


def _level(verb: str, op_id: str, *, subject: bool) -> dict[str, Any]:
    where = "a subject's" if subject else "the global"
    params = [SUBJECT] if subject else []
    if verb == "get":
        return operation(
            op_id, f"Get {where} compatibility level.", tag="config",
            parameters=[*params, _DEFAULT_TO_GLOBAL],
            responses={200: registry_reply("The level.", ref("Config")),
                       **({404: _NO_CONFIG} if subject else {})})
    if verb == "put":
        return operation(
            op_id, f"Set {where} compatibility level.", tag="config",
            parameters=params, request=_LEVEL_BODY,
            responses={200: registry_reply("The level now in force.", ref("ConfigUpdated")),
                       422: error("Not one of the seven levels (42203), or read-only "
                                  "(42205)."), 503: WRITE_BUSY})
    return operation(
        op_id, f"Remove {where} compatibility level (back to the default).", tag="config",
        parameters=params,
        responses={200: registry_reply("The level removed.", ref("Config")),
                   **({404: _NO_CONFIG} if subject else {}), 422: _READ_ONLY,
                   503: WRITE_BUSY})


def _mode(verb: str, op_id: str, *, subject: bool) -> dict[str, Any]:
    where = "a subject's" if subject else "the global"
    params = [SUBJECT] if subject else []
    missing = ({404: error("The subject has no mode of its own (GET: 40409, DELETE: 40401).")}
               if subject else {})
    if verb == "get":
        return operation(
            op_id, f"Get {where} mode.", tag="config",
            parameters=[*params, _DEFAULT_TO_GLOBAL] if subject else params,
            responses={200: registry_reply("The mode.", ref("Mode")), **missing})
    if verb == "put":
        return operation(
            op_id, f"Set {where} mode.", tag="config",
            parameters=[*params, _FORCE], request=_MODE_BODY,
            responses={200: registry_reply("The mode now in force.", ref("Mode")),
                       422: _BAD_MODE, 503: WRITE_BUSY})
    return operation(
        op_id, f"Remove {where} mode.", tag="config", parameters=params,
        responses={200: registry_reply("The mode removed.", ref("Mode")), **missing,
                   422: _READ_ONLY, 503: WRITE_BUSY})


def _check(op_id: str, *, version: bool) -> dict[str, Any]:
    against = "one version" if version else "the versions the subject's level names"
    return operation(
        op_id, f"Check a schema against {against}.", tag="config",
        parameters=[SUBJECT, *([VERSION] if version else []),
                    flag("verbose", "List messages even when compatible."),
                    flag("normalize", "Normalize the schema before comparing.")],
        request=schema_body("The schema to check."),
        description="Changes nothing. Without a version, an unknown subject is compatible.",
        responses={200: registry_reply("The verdict.", ref("CompatibilityCheck")),
                   404: error("Subject (40401) or version (40402) not found."),
                   422: error("Invalid schema (42201) or version (42202).")})


PATHS: dict[str, dict[str, Any]] = {
    "/config": {"get": _level("get", "getGlobalConfig", subject=False),
                "put": _level("put", "setGlobalConfig", subject=False),
                "delete": _level("delete", "deleteGlobalConfig", subject=False)},
    "/config/{subject}": {"get": _level("get", "getSubjectConfig", subject=True),
                          "put": _level("put", "setSubjectConfig", subject=True),
                          "delete": _level("delete", "deleteSubjectConfig", subject=True)},
    "/mode": {"get": _mode("get", "getGlobalMode", subject=False),
              "put": _mode("put", "setGlobalMode", subject=False)},
    "/mode/{subject}": {"get": _mode("get", "getSubjectMode", subject=True),
                        "put": _mode("put", "setSubjectMode", subject=True),
                        "delete": _mode("delete", "deleteSubjectMode", subject=True)},
    "/compatibility/subjects/{subject}/versions": {
        "post": _check("checkCompatibility", version=False)},
    "/compatibility/subjects/{subject}/versions/{version}": {
        "post": _check("checkCompatibilityWithVersion", version=True)},
}
