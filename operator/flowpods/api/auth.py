"""Who may call the API: bearer tokens checked by the Kubernetes API server itself.

A token is whatever the cluster accepts (a service-account token, an OIDC token, a static token): a
TokenReview says who it belongs to, and a SubjectAccessReview asks RBAC whether that user may `create`
(start, kill) or `get` (read, follow) Executions in the namespace. flowpods keeps no users or roles of its
own, so `kubectl auth can-i create executions.flowpods.io -n NS` answers the same question.
"""

from __future__ import annotations

import hmac
import json
from typing import Any, Literal, cast

from kubernetes import client
from pydantic import BaseModel, Field

from flowpods.core.model import Flow, Webhook
from flowpods.kube.resources import GROUP

Verb = Literal["create", "get", "update"]


class User(BaseModel):
    """The caller, as the API server's TokenReview describes them."""

    username: str
    uid: str | None = None
    groups: list[str] = Field(default_factory=list)
    extra: dict[str, list[str]] = Field(default_factory=dict)


class AuthError(Exception):
    """401 (no or bad token) or 403 (not allowed); the message says which and what to do."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


# --- pure ----------------------------------------------------------------------------------------------


def bearer_token(header: str | None) -> str:
    """The token of an `Authorization: Bearer <token>` header; AuthError(401) otherwise."""
    if not header or not header.strip():
        raise AuthError(401, "missing bearer token: send 'Authorization: Bearer <token>' (a Kubernetes token)")
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError(401, "the Authorization header must be 'Bearer <token>'")
    return token.strip()


def token_review_body(token: str) -> dict[str, Any]:
    return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}}


def user_from_review(review: dict[str, Any]) -> User:
    """The user of an answered TokenReview; AuthError(401) when the token was not accepted."""
    status = review.get("status") or {}
    if not status.get("authenticated"):
        raise AuthError(401, "the bearer token was not accepted by the Kubernetes API server (expired or unknown)")
    info = status.get("user") or {}
    return User(
        username=info.get("username") or "",
        uid=info.get("uid"),
        groups=list(info.get("groups") or []),
        extra={k: list(v) for k, v in (info.get("extra") or {}).items()},
    )


def access_review_body(user: User, namespace: str, verb: Verb, name: str | None = None) -> dict[str, Any]:
    attributes: dict[str, Any] = {"namespace": namespace, "verb": verb, "group": GROUP, "resource": "executions"}
    if name:
        attributes["name"] = name
    spec: dict[str, Any] = {"user": user.username, "groups": user.groups, "resourceAttributes": attributes}
    if user.uid:
        spec["uid"] = user.uid
    if user.extra:
        spec["extra"] = user.extra
    return {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}


def check_access(review: dict[str, Any], user: User, namespace: str, verb: Verb) -> None:
    """AuthError(403) naming the permission the user lacks, unless the review allowed it."""
    status = review.get("status") or {}
    if status.get("allowed") and not status.get("denied"):
        return
    reason = f" ({status['reason']})" if status.get("reason") else ""
    raise AuthError(
        403,
        f"user '{user.username}' may not {verb} executions.{GROUP} in namespace '{namespace}'{reason}; "
        f"grant it with a Role and RoleBinding",
    )


def webhook_matches(flow: Flow, key: str) -> Webhook | None:
    """The enabled Webhook trigger with this key; every key is compared in constant time."""
    given = key.encode()
    found = None
    for trigger in flow.triggers:
        if isinstance(trigger, Webhook) and not trigger.disabled and hmac.compare_digest(trigger.key.encode(), given):
            found = found or trigger
    return found


# --- the shell -----------------------------------------------------------------------------------------


class KubeAuth:
    """TokenReview + SubjectAccessReview through the operator's own API client (blocking: run in a thread)."""

    def __init__(self, api_client: client.ApiClient):
        self.authn = client.AuthenticationV1Api(api_client)
        self.authz = client.AuthorizationV1Api(api_client)

    def authenticate(self, token: str) -> User:
        # the client takes plain dicts and, without preloading, returns the raw response: its hints say neither
        response: Any = self.authn.create_token_review(cast(Any, token_review_body(token)), _preload_content=False)
        return user_from_review(json.loads(response.data))

    def authorize(self, user: User, namespace: str, verb: Verb, name: str | None = None) -> None:
        body = access_review_body(user, namespace, verb, name)
        response: Any = self.authz.create_subject_access_review(cast(Any, body), _preload_content=False)
        check_access(json.loads(response.data), user, namespace, verb)
