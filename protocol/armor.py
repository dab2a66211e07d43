"""ASCII armor for cards and sealed files: ``-----BEGIN BORDERLINK <KIND>-----``, base64 lines.

Armor exists so a card or a sealed message survives e-mail, chat and removable media unchanged and
is recognisable by eye. It adds no integrity: the signature inside does that.
"""

from __future__ import annotations

import base64
import binascii

from protocol.errors import Malformed

LINE = 64


def armor(kind: str, blocks: list[bytes]) -> str:
    """Armor one or more blocks; blocks after the first start with ``=`` on their own line."""
    lines = [f"-----BEGIN BORDERLINK {kind}-----"]
    for i, block in enumerate(blocks):
        text = base64.b64encode(block).decode()
        if i:
            lines.append("=" + text)
        else:
            lines.extend(text[j : j + LINE] for j in range(0, len(text), LINE))
    lines.append(f"-----END BORDERLINK {kind}-----")
    return "\n".join(lines) + "\n"


def dearmor(kind: str, text: str | bytes, *, max_bytes: int) -> list[bytes]:
    """Inverse of :func:`armor`; any deviation is :class:`Malformed` with a one-line reason."""
    what = kind.lower()
    if len(text) > max_bytes * 2:
        raise Malformed(f"{what} is too large ({len(text)} bytes)")
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError as exc:
            raise Malformed(f"{what} is not ASCII armored text") from exc
    lines = [ln.strip() for ln in text.strip().splitlines()]
    begin, end = f"-----BEGIN BORDERLINK {kind}-----", f"-----END BORDERLINK {kind}-----"
    if len(lines) < 3 or lines[0] != begin or lines[-1] != end:
        raise Malformed(f"not a borderlink {what}: expected '{begin}' ... '{end}'")
    first: list[str] = []
    rest: list[str] = []
    for ln in lines[1:-1]:
        if ln.startswith("="):
            rest.append(ln[1:])
        elif rest:
            raise Malformed(f"{what} armor has text after its signature line")
        else:
            first.append(ln)
    try:
        return [base64.b64decode(b, validate=True) for b in ["".join(first), *rest]]
    except (binascii.Error, ValueError) as exc:
        raise Malformed(f"{what} armor is not valid base64") from exc
