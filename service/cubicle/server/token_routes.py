"""PUT /token: replace the desktop's token while it runs.

The caller proves it holds the current token (the middleware checked it) and sends the SHA-256
of the next one: the new token itself never travels here, and nothing the desktop keeps can be
used as a credential. The fleet gives a desktop from its warm pool to a user this way, with a
token only that user has seen; anyone can rotate a token that may have leaked."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field

from cubicle.web import error_responses, exact_json_types, only_known_query

router = APIRouter(dependencies=[Depends(only_known_query), Depends(exact_json_types)])


class TokenRotation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="hex SHA-256 of the new token (UTF-8)")


class TokenRotated(BaseModel):
    rotated: bool = Field(description="from now on only the new token is accepted")


@router.put("/token", tags=["access"], responses=error_responses(422),
            summary="Replace the token: send the SHA-256 of the next one; the current one stops working")
async def rotate_token(body: TokenRotation, request: Request) -> TokenRotated:
    request.app.state.credential.replace(body.sha256)
    return TokenRotated(rotated=True)
