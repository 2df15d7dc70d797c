"""`mailplat passwd`: make a password hash (argon2id) to paste into `password:`.

Asks twice on a terminal (hidden), or reads one line from stdin when piped;
--random makes a password and prints both. Plain passwords never go in YAML.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from mailplat.auth.passwords import hash_password, random_password
from mailplat.cli.console import JsonOpt, emit_json, fail, out

RandomOpt = Annotated[
    bool, typer.Option("--random", help="Generate a random password; print it and its hash.")
]
LengthOpt = Annotated[int, typer.Option("--length", min=12, max=128, help="Length for --random.")]


def passwd(random: RandomOpt = False, length: LengthOpt = 20, as_json: JsonOpt = False) -> None:
    """Print an argon2id hash of a password for a mailbox's `password:` key.

    On a terminal it asks twice without echo; otherwise it reads the first line of stdin.
    """
    if random:
        password = random_password(length)
    elif sys.stdin.isatty():
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        fail("empty password")
    hashed = hash_password(password)
    if as_json:
        emit_json({"password": password, "hash": hashed} if random else {"hash": hashed})
    elif random:
        out.print(f"password: {password}", highlight=False, markup=False)
        out.print(f"hash:     {hashed}", highlight=False, markup=False)
    else:
        out.print(hashed, highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    app.command("passwd")(passwd)
