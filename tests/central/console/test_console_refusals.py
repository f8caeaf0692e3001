"""The store's refusals the console can meet carry a reason code, and every code has its
sentence in both catalogues (central/console/refusals.py): the AST of the store modules
the console calls is walked, so a new ``raise BadRequest("...")`` without ``reason=`` in
one of them fails here instead of showing English to a French operator."""

from __future__ import annotations

import ast
from pathlib import Path

from central import errors
from central.console.i18n import translations
from central.console.refusals import (
    FIELDS,
    GENERIC,
    LINE,
    REASONS,
    UNKNOWN_FIELD,
    field_label,
    refusal_message,
)
from central.errors import BadRequest, NotFound

ROOT = Path(__file__).resolve().parents[3]
CONSOLE = ROOT / "central" / "console"
STORE = ROOT / "central" / "store"
#: The store's refusal classes (CentralError and its subclasses).
REFUSALS = {
    name
    for name, value in vars(errors).items()
    if isinstance(value, type) and issubclass(value, errors.CentralError)
}


def _store_calls() -> set[str]:
    """The names the console calls on its store (``console.store.x``, ``self.store.x``)."""
    called = set()
    for path in CONSOLE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute):
                owner = node.value
                name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
                if name == "store":
                    called.add(node.attr)
    return called


def _console_store_modules() -> list[Path]:
    """The store modules defining a method the console calls, and the shared checks."""
    called = _store_calls()
    found = {STORE / "validate.py"}
    for path in STORE.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        if any(
            isinstance(node, ast.FunctionDef) and node.name in called for node in ast.walk(tree)
        ):
            found.add(path)
    return sorted(found)


def _raises(path: Path) -> list[ast.Call]:
    """The ``raise SomeCentralError(...)`` calls of *path*."""
    calls = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            func = node.exc.func
            if isinstance(func, ast.Name) and func.id in REFUSALS:
                calls.append(node.exc)
    return calls


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _passes_on_extra(call: ast.Call) -> bool:
    """``**{**exc.extra, ...}`` (a refusal re-raised with its cause's codes) or
    ``**_claims_refusal(...)`` (codes worked out by a helper of the store's)."""
    for keyword in call.keywords:
        if keyword.arg is None:
            value = keyword.value
            if "extra" in ast.unparse(value):
                return True
            if isinstance(value, ast.Call) and ast.unparse(value.func).endswith("_refusal"):
                return True
    return False


def test_the_console_reaches_the_store_modules_it_should():
    names = {path.stem for path in _console_store_modules()}
    # The modules of the forms' changes; a rename would make this scan look at nothing.
    assert {"visits", "credentials", "access", "doormodes", "screening", "operators"} <= names
    assert {"eventpacks", "monitor", "validate"} <= names


def test_every_store_refusal_the_console_can_meet_has_a_reason_code():
    missing = []
    count = 0
    for path in _console_store_modules():
        for call in _raises(path):
            count += 1
            if _keyword(call, "reason") is None and not _passes_on_extra(call):
                missing.append(f"{path.relative_to(ROOT)}:{call.lineno}")
    assert count > 100  # the scan found the raises
    assert not missing, f"a store refusal without reason=...: {missing}"


def test_every_reason_and_field_the_store_names_has_the_consoles_words():
    reasons, fields = set(), set()
    for path in _console_store_modules():
        for call in _raises(path):
            for key, found in (("reason", reasons), ("field", fields), ("other", fields)):
                value = _keyword(call, key)
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    found.add(value.value)
    # reason=row["approval"] / row["state"]: the approval's states.
    reasons |= {"pending", "refused"}
    assert reasons - set(REASONS) == set()
    assert {f for f in fields if field_label(f)["text"] == UNKNOWN_FIELD} == set()


def test_every_reason_and_label_is_translated_into_french():
    french = translations("fr").gettext
    texts = [*REASONS.values(), *FIELDS.values(), GENERIC, LINE, UNKNOWN_FIELD]
    untranslated = [text for text in texts if french(text) == text]
    assert not untranslated


def _french(message: dict) -> str:  # type: ignore[type-arg]
    """*message* as the console's templates render it (nested messages first), in French."""
    french = translations("fr").gettext
    args = {
        key: _french(value) if isinstance(value, dict) else value
        for key, value in message["args"].items()
    }
    return french(message["text"]) % args


def test_a_refusal_comes_out_in_french_with_its_field_in_words():
    exc = BadRequest(
        "host_email: must be an e-mail address like host@example.com, got 'x'",
        field="host_email",
        reason="email",
    )
    said = _french(refusal_message(exc))
    assert said == (
        "Vérifiez l’e-mail de l’hôte : ce doit être une adresse e-mail comme hote@example.com."
    )
    assert "must be" not in said
    line = BadRequest("invitations[1]: visitor ...", field="visitor", reason="text", index=1)
    line.extra.update(min=1, max=128)
    assert _french(refusal_message(line)) == (
        "Ligne 2 : Vérifiez le nom du visiteur : de 1 à 128 caractères."
    )
    missing = NotFound("no badge 04a1", field="badge", reason="not_found", name="04a1")
    assert _french(refusal_message(missing)) == "Introuvable : le badge 04a1."


def test_an_unknown_reason_or_field_falls_back_to_translated_words():
    newer = BadRequest("lift: must be going up", field="host_email", reason="from_the_future")
    assert refusal_message(newer)["text"] == GENERIC
    assert _french(refusal_message(newer)) == "Le central l’a refusé : vérifiez l’e-mail de l’hôte."
    bare = BadRequest("something English")
    assert _french(refusal_message(bare)) == "Le central l’a refusé : vérifiez un champ."
    assert _french(refusal_message(ValueError("English"))).startswith("Le central")
    # A dotted field falls back to its last part's label.
    assert field_label("settings.mode")["text"] == FIELDS["mode"]


def test_the_templates_translate_a_nested_message_and_escape_its_arguments():
    import jinja2

    from central.console.app import _translate_nested

    env = jinja2.Environment(autoescape=True, extensions=["jinja2.ext.i18n"])
    env.install_gettext_translations(translations("fr"), newstyle=True)  # type: ignore[attr-defined]
    _translate_nested(env)
    template = env.from_string("{{ _(m.text, **m.args) }}")
    attack = BadRequest(
        "invitations[0]: no", field="operator", reason="not_found", name="<b>x</b>", index=0
    )
    html = template.render(m=refusal_message(attack))
    assert html == "Ligne 1 : Introuvable : l’opérateur &lt;b&gt;x&lt;/b&gt;."
