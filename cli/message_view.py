"""A received message as a person reads it (``borderlink inbox show``): a TLP and handling banner,
then what, where, when and how much in words, the conveyance and route, the personal data in a
section of its own, and where the message stands (read, acknowledged, withdrawn).

The body arrives as the node decoded it (JSON-like data of a body that passed its schema). Every
string in it came from a peer and goes through :func:`protocol.text.escaped` (free text line by
line, :func:`protocol.text.escaped_lines`) before it is printed; the header fields come escaped
from :func:`cli.output.emit`. ``--json`` never comes here: it prints the body exactly.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any, Final

from protocol.text import escaped, escaped_lines

TLP_MEANING: Final = {
    "RED": "for the named recipients only, not to be passed on",
    "AMBER+STRICT": "within the receiving unit only",
    "AMBER": "within the receiving organisation, on a need-to-know basis",
    "GREEN": "within the community, not publicly",
    "CLEAR": "no limit on disclosure",
}
# Europol SIENA handling codes (PROTOCOL.md 7, meta.handling).
HANDLING: Final = {
    "H0": "no restriction",
    "H1": "not to be used as evidence without the sender's permission",
    "H2": "not to be passed on without the sender's permission",
    "H3": "other restrictions: ask the sender before any use",
}
RELIABILITY: Final = {
    "A": "reliable",
    "B": "mostly reliable",
    "C": "mostly unreliable",
    "X": "not assessed",
}
ACCURACY: Final = {
    1: "known to be true",
    2: "known to the source",
    3: "corroborated",
    4: "cannot be judged",
}
# UN/ECE Rec 20 codes (protocol/schemas/codes.py) as a person writes them after a number.
UNITS: Final = {
    "KGM": "kg", "GRM": "g", "MGM": "mg", "TNE": "t", "LTR": "l", "MLT": "ml", "MTQ": "m³",
    "MTR": "m", "MTK": "m²", "H87": "pieces", "C62": "units", "NAR": "articles",
    "NPR": "pairs", "PR": "pairs", "SET": "sets", "DZN": "dozen", "MIL": "thousand",
}  # fmt: skip
# Places a unit of the region names often; any other code is shown as it is.
PLACES: Final = {
    "MEBAR": "Bar", "MEKOT": "Kotor", "MEPOG": "Podgorica", "MEBUD": "Budva",
    "RSBEG": "Belgrade", "RSNIS": "Niš", "RSNVS": "Novi Sad", "MKSKP": "Skopje",
    "HRRJK": "Rijeka", "HRPLE": "Ploče", "HRZAG": "Zagreb", "HRSPU": "Split",
    "ALDRZ": "Durrës", "ALTIA": "Tirana", "BASJJ": "Sarajevo", "XKPRN": "Pristina",
    "SIKOP": "Koper", "GRPIR": "Piraeus", "GRSKG": "Thessaloniki", "ITGOA": "Genoa",
    "ITGIT": "Gioia Tauro", "ITTRS": "Trieste", "NLRTM": "Rotterdam", "BEANR": "Antwerp",
    "DEHAM": "Hamburg", "ESALG": "Algeciras", "ECGYE": "Guayaquil", "ECPBO": "Puerto Bolívar",
    "PAONX": "Colón", "PAMIT": "Manzanillo", "COCTG": "Cartagena", "BRSSZ": "Santos",
    "BEG": "Belgrade airport", "TGD": "Podgorica airport", "TIV": "Tivat airport",
    "SKP": "Skopje airport", "IST": "Istanbul airport", "FRA": "Frankfurt airport",
}  # fmt: skip
MONTHS: Final = (
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
)  # fmt: skip


def tlp_mark(tlp: str | None) -> str:
    """A message's TLP as listings and banners show it; unknown for messages stored before
    the node kept it."""
    return f"TLP:{escaped(tlp)}" if tlp else "TLP:unknown"


def _t(value: Any) -> str:
    """A peer's single-line value, escaped."""
    return escaped(str(value))


def _text(value: str, indent: str = "    ") -> str:
    """A peer's free text (tabs and newlines allowed), escaped line by line and indented."""
    return "\n".join(indent + line for line in escaped_lines(value).split("\n"))


def when(value: str) -> str:
    """An RFC 3339 UTC time as ``14 May 2024 06:42 UTC``."""
    try:
        t = datetime.fromisoformat(value)
    except ValueError:
        return _t(value)
    return f"{t.day} {MONTHS[t.month - 1]} {t.year} {t:%H:%M} UTC"


def day(value: str) -> str:
    try:
        d = date.fromisoformat(value)
    except ValueError:
        return _t(value)
    return f"{d.day} {MONTHS[d.month - 1]} {d.year}"


def place(code: str) -> str:
    """``Bar MEBAR``: the place's name if known, and its code."""
    name = PLACES.get(code)
    return f"{name} {_t(code)}" if name else _t(code)


def amount(quantity: Mapping[str, Any]) -> str:
    value, unit = quantity["value"], str(quantity["unit"])
    number = str(int(value)) if float(value).is_integer() else str(value)
    return f"{number} {UNITS.get(unit, _t(unit))}"


def conveyance(c: Mapping[str, Any]) -> str:
    mode = str(c.get("mode", ""))
    parts: list[str] = []
    if mode == "sea":
        parts.append(f"vessel {_t(c['vessel_name'])}")
        parts += [f"IMO {_t(c['imo_number'])}"] if c.get("imo_number") else []
        parts += [f"container {_t(c['container_number'])}"] if c.get("container_number") else []
        parts += [f"bill of lading {_t(c['bill_of_lading'])}"] if c.get("bill_of_lading") else []
    elif mode == "air":
        parts.append(f"flight {_t(c['flight'])} on {day(str(c['flight_date']))}")
        parts += [f"air waybill {_t(c['air_waybill'])}"] if c.get("air_waybill") else []
    elif mode == "road":
        parts.append(f"tractor {_t(c['tractor_plate'])} ({_t(c['country'])})")
        parts += [f"trailer {_t(c['trailer_plate'])}"] if c.get("trailer_plate") else []
    elif mode == "rail":
        parts.append(f"train {_t(c['train_number'])}")
        parts += [f"wagon {_t(c['wagon_number'])}"] if c.get("wagon_number") else []
    elif mode == "postal":
        parts.append(f"{_t(c['service'])} item {_t(c['tracking_number'])}")
    return f"{_t(mode)}: " + ", ".join(parts)


def route(r: Mapping[str, Any]) -> str:
    points = [r["origin"], *r.get("transits", ()), r["destination"]]
    return " -> ".join(place(str(p)) for p in points)


def _party(p: Mapping[str, Any]) -> str:
    line = f"  {_t(p['role'])}: {_t(p['name'])}"
    if p.get("nationality"):
        line += f", nationality {_t(p['nationality'])}"
    doc = p.get("document")
    if doc:
        line += f", {_t(doc['type'])} {_t(doc['number'])} issued by {_t(doc['issuing_country'])}"
    return line


def _seizure(m: Mapping[str, Any]) -> list[str]:
    c = m["commodity"]
    lines = [
        f"what:     {amount(m['quantity'])} {_t(c['type'])} ({_t(c['category'])})"
        + (f", HS {_t(m['hs_code'])}" if m.get("hs_code") else ""),
        f"where:    {place(str(m['place']))}",
        f"when:     {when(str(m['occurred_at']))}",
        f"found by: {_t(m['detection'])}",
        f"hidden:   {_t(m['concealment']['method'])}",
        f"carried:  {conveyance(m['conveyance'])}",
    ]
    if m.get("route"):
        lines.append(f"route:    {route(m['route'])}")
    if c.get("description"):
        lines += ["goods:", _text(c["description"])]
    if m["concealment"].get("description"):
        lines += ["concealment:", _text(m["concealment"]["description"])]
    if m.get("narrative"):
        lines += ["narrative:", _text(m["narrative"])]
    parties = m.get("parties") or ()
    if parties:
        lines += ["", "PERSONAL DATA: parties (handle under your data-protection rules)"]
        lines += [_party(p) for p in parties]
    return lines


def _risk(m: Mapping[str, Any]) -> list[str]:
    lines = [
        f"profile:  {_t(m['title'])}",
        f"risk:     {_t(m['risk_level'])}, {_t(m['category'])} by {_t(m['modality'])}",
        f"valid:    {when(str(m['valid_from']))} to {when(str(m['valid_until']))}",
        "indicators:",
    ]
    lines += [
        f"  {_t(i['field'])} {_t(i['operator'])} {', '.join(_t(v) for v in i['values'])} "
        f"(weight {_t(i['weight'])}%)"
        for i in m["indicators"]
    ]
    lines += ["rationale:", _text(m["rationale"])]
    if m.get("feedback_requested"):
        lines.append("feedback: requested ('borderlink inbox ack ID --action ...')")
    if m.get("related_alerts"):
        lines.append("related:  " + ", ".join(_t(a) for a in m["related_alerts"]))
    return lines


def _feedback(m: Mapping[str, Any]) -> list[str]:
    lines = [f"about:    message {_t(m['refers_to'])}", f"action:   {_t(m['action'])}"]
    if m.get("seizure_alert"):
        lines.append(f"alert:    {_t(m['seizure_alert'])}")
    if m.get("case_reference"):
        lines.append(f"case:     {_t(m['case_reference'])}")
    if m.get("details"):
        lines += ["details:", _text(m["details"])]
    return lines


def _retraction(m: Mapping[str, Any]) -> list[str]:
    kind = "withdraws" if m["kind"] == "withdraw" else "corrects"
    lines = [f"{kind}: message {_t(m['retracts'])}"]
    if m.get("replacement"):
        lines.append(f"replaced by: message {_t(m['replacement'])}")
    return [*lines, "reason:", _text(m["reason"])]


_BODIES = {
    "seizure-alert": _seizure,
    "risk-profile": _risk,
    "feedback": _feedback,
    "retraction": _retraction,
}


def banner(meta: Mapping[str, Any]) -> list[str]:
    tlp, handling = str(meta["tlp"]), str(meta["handling"])
    return [
        f"{tlp_mark(tlp)}  handling: {_t(handling)} "
        f"({HANDLING.get(handling, 'unknown')}); share {TLP_MEANING.get(tlp, 'as the sender says')}",
    ]


def message_human(d: Mapping[str, Any]) -> str:
    """``inbox show``'s view: ``d`` is the node's answer with its header fields escaped and the
    body (``message``) as received."""
    m = d["message"]
    meta = m["meta"]
    lines = banner(meta)
    lines.append(
        f"priority: {_t(meta['priority']).upper()}   source {_t(meta['source_reliability'])} "
        f"({RELIABILITY.get(meta['source_reliability'], '?')}), information "
        f"{_t(meta['info_accuracy'])} ({ACCURACY.get(meta['info_accuracy'], '?')})"
    )
    lines += [
        f"from:     {d['from']} (signature verified)",
        f"type:     {d['type']}",
        f"id:       {d['id']}",
    ]
    if meta.get("supersedes"):
        lines.append(f"replaces: message {_t(meta['supersedes'])}")
    if meta.get("in_reply_to"):
        lines.append(f"reply to: message {_t(meta['in_reply_to'])}")
    lines.append("")
    lines += _BODIES[d["type"]](m) if d["type"] in _BODIES else []
    lines += ["", *status_lines(d)]
    return "\n".join(lines)


def status_lines(d: Mapping[str, Any]) -> list[str]:
    """Where the message stands: acknowledged (with what action) or not, withdrawn (by which
    message), suspect."""
    lines = []
    if d["acked"]:
        lines.append(f"status:   acknowledged ({d['acked']}): feedback sent to {d['from']}")
    else:
        lines.append(
            "status:   not acknowledged (send feedback: 'borderlink inbox ack "
            f"{d['id']} --action ACTION')"
        )
    if d["withdrawn_by"]:
        lines.append(f"RETRACTED by the sender: see message {d['withdrawn_by']}")
    if d.get("suspect"):
        lines.append(f"SUSPECT: {d['suspect']}")
    return lines
