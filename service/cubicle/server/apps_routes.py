"""GET /apps: the desktop's programs, and whether this image has each (one built without
LibreOffice has no office suite): what a model is told it can use, and what /apps/launch
starts."""

from __future__ import annotations

import shutil

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from cubicle.web import only_known_query

router = APIRouter(dependencies=[Depends(only_known_query)])

# (program, what it is), in the order of the panel's launchers.
PROGRAMS = (
    ("xterm", "a terminal (xterm)"),
    ("mousepad", "a text editor (mousepad)"),
    ("galculator", "a calculator (galculator)"),
    ("pcmanfm", "a file manager (pcmanfm)"),
    ("firefox-esr", "Firefox"),
    ("chromium", "Chromium"),
    ("libreoffice", "LibreOffice Calc and Writer (libreoffice --calc, --writer)"),
)


class App(BaseModel):
    command: str = Field(description="the program to give /apps/launch")
    description: str
    installed: bool


class AppList(BaseModel):
    apps: list[App]


def installed_apps() -> list[App]:
    return [App(command=program, description=description, installed=shutil.which(program) is not None)
            for program, description in PROGRAMS]


@router.get("/apps", tags=["windows"], summary="The desktop's programs, and which of them this desktop has")
async def apps() -> AppList:
    return AppList(apps=installed_apps())
