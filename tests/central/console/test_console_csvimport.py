"""Reading a guest list (central/console/csvimport.py) as spreadsheets write it: the
separators, the byte-order mark, French headers, the date formats, and bad files told
apart from bad lines (never an exception)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from central.console import csvimport

PARIS = ZoneInfo("Europe/Paris")


def _parse(text: str) -> csvimport.Parsed:
    return csvimport.parse(
        text, zone=PARIS, doors={"front", "lab"}, zones={"hall"}, lang="fr", site="hq"
    )


def _texts(errors: list[dict]) -> list[str]:  # type: ignore[type-arg]
    return [e["text"] % e["args"] for e in errors]


def test_excel_in_french_and_in_english_read_the_same():
    french = (
        "\ufeffNom;Hôte;Début;Fin;Portes;Usage\n"
        "Émile;Léa;05/12/2036 08:00;05/12/2036 18:30;front lab;unique\n"
    )
    english = (
        "visitor,host,from,until,doors,use\n"
        "Émile,Léa,2036-12-05 08:00,2036-12-05T18:30,front|lab,single\n"
    )
    text = csvimport.decode(french.encode())
    assert text is not None and not text.startswith("\ufeff")
    a, b = _parse(text), _parse(english)
    assert a.ok and b.ok
    assert a.lines[0].body == b.lines[0].body
    body = a.lines[0].body
    assert body["doors"] == ["front", "lab"] and body["single_use"] and body["lang"] == "fr"
    assert dt.datetime.fromtimestamp(body["not_before"], PARIS).hour == 8
    assert body["expires"] - body["not_before"] == 10 * 3600 + 1800


def test_a_quoted_cell_may_hold_the_separator():
    text = (
        "visitor;from;until;zones;host\n"
        '"Dupont; Jean";2036-12-05 08:00;2036-12-05 09:00;hall;"A; B"\n'
    )
    parsed = _parse(text)
    assert parsed.ok and parsed.lines[0].visitor == "Dupont; Jean"
    assert parsed.lines[0].host == "A; B"


def test_each_line_says_what_is_wrong():
    text = (
        "visitor,from,until,doors,zones,host_email,lang,use\n"
        ",2036-12-05 08:00,2036-12-05 09:00,front,,,,\n"
        "B,tomorrow,2036-12-05 09:00,front,,,,\n"
        "C,2036-12-05 09:00,2036-12-05 08:00,front,,,,\n"
        "D,2036-12-05 08:00,2036-12-05 09:00,,,,,\n"
        "E,2036-12-05 08:00,2036-12-05 09:00,garage,attic,,,\n"
        "F,2036-12-05 08:00,2036-12-05 09:00,front,,not-an-address,de,twice\n"
        "G,2036-12-05 08:00,2036-12-05 09:00,front,,,,,extra\n"
        ",,,,,,,\n"  # an empty line is skipped
        "H,2036-12-05 08:00,2036-12-05 09:00,front,,h@example.com,EN,\n"
    )
    parsed = _parse(text)
    assert not parsed.errors and not parsed.ok
    by_line = {line.number: _texts(line.errors) for line in parsed.lines}
    assert by_line[2] == ["The visitor's name is missing."]
    assert by_line[3] == ["“tomorrow” in “from” is not a date and time like 2026-12-05 08:00."]
    assert by_line[4] == ["The end of the validity must come after its start."]
    assert by_line[5] == ["Give at least one door or one zone."]
    assert by_line[6] == ["Unknown door “garage”.", "Unknown zone “attic”."]
    assert by_line[7] == [
        "“not-an-address” is not an e-mail address.",
        "Language “de”: en or fr.",
        "Use “twice”: single or multiple.",
    ]
    assert by_line[8] == ["More cells than columns."]
    assert 9 not in by_line
    assert by_line[10] == [] and parsed.lines[-1].body["lang"] == "en"


def test_a_bad_file_is_told_as_a_whole():
    assert csvimport.decode("Nom;Début\nÉmile;x\n".encode("latin-1")) is None
    for text, expected in (
        ("", "The file is empty."),
        ("visitor;doors\n", "Column “from” is missing."),
        ("visitor,from,until\nA,2036-12-05 08:00,2036-12-05 09:00\n",
         "The file needs a “doors” or a “zones” column."),
        ("visitor,from,until,doors,colour\n", "Unknown column “colour”."),
        ("visitor,nom,from,until,doors\n", "Column “nom” appears twice."),
        ("visitor,from,until,doors\n", "The file has no line after its header."),
        ("visitor,from,until,doors\nA\x00,x,y,z\n", "The file holds a NUL character"),
        ('visitor,from,until,doors\n"' + "a" * 140_000 + '",x,y,z\n', "The file is not CSV text"),
        ("visitor,from,until,doors\n" + "A,2036-12-05 08:00,2036-12-05 09:00,front\n" * 501,
         "The file has 501 lines: 500 at most."),
    ):  # fmt: skip
        parsed = _parse(text)
        assert parsed.errors and not parsed.lines and not parsed.ok, text[:40]
        assert any(t.startswith(expected) for t in _texts(parsed.errors)), _texts(parsed.errors)
