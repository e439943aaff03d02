"""README's Troubleshooting section lists every error message the pack raises, and only real ones.

Messages (read with `ast` from every .py outside tests/ and bench/) are the strings and f-strings
a `raise` can carry: its argument, through `or`, `if else`, `+`, lists and the arguments of a
capitalised call (an exception). Each variable and call in there, f-string placeholders included,
is followed again and again: a variable to what its function assigns to it (`=`, `+=`, `.append()`),
a call to what the pack's functions of that name return (`x.helper()` follows every `def helper`).

Forward rule: the placeholders (not `{CONSTANT}`, a module-level string) cut a message into literal
runs. Its KEY is its longest run, whitespace collapsed, spaces and punctuation stripped from both
ends, cut to 40 characters; under 12 characters, there is no key and no row is needed. The section
(whitespace collapsed, backticks dropped, `\\|` read as `|`, case ignored) must contain the key, so a
row quoting the message, with `...` for the variable parts, passes.

Reverse rule: each `code span` in the first column of the section's tables, split at `...`, must
have every piece of 4+ characters (ends stripped) inside some string literal of the pack, so that
rows of reworded or removed messages do not linger. FOREIGN: spans quoting Python or ComfyUI.
"""

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
KEY_LENGTH, MIN_KEY, MIN_PIECE = 40, 12, 4
STRIP = " \t\n.,:;!?'\"()[]-"
FOREIGN = {"(IMPORT FAILED)", "No module named 'cv2'", "Prompt outputs failed validation", "Value not in list"}
FUNCTION = (ast.FunctionDef, ast.AsyncFunctionDef)


def pack_files():
    """(path relative to ROOT, parsed module) for each source file of the pack."""
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).parts
        if parts[0] not in ("tests", "bench") and not any(p.startswith(".") or p == "__pycache__" for p in parts):
            yield "/".join(parts), ast.parse(path.read_text(encoding="utf-8"))


def string_constants(files):
    """{file: {name: value}} of the module-level strings a file can use: its own, else the pack's by name."""
    own = {
        file: {
            target.id: node.value.value
            for node in tree.body
            if isinstance(node, ast.Assign)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        for file, tree in files
    }
    everyone = {name: value for names in own.values() for name, value in names.items()}
    return {file: {**everyone, **names} for file, names in own.items()}


def own_nodes(scope):
    """The nodes of a module or function, without those of the functions defined inside it."""
    stack = list(ast.iter_child_nodes(scope))
    while stack:
        node = stack.pop()
        yield node
        if not isinstance(node, (*FUNCTION, ast.Lambda)):
            stack.extend(ast.iter_child_nodes(node))


def runs(node, constants, holes):
    """The literal runs of a string or f-string (None for other nodes); the placeholders go to `holes`."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if not isinstance(node, ast.JoinedStr):
        return None
    out = [""]
    for part in node.values:
        if isinstance(part, ast.Constant) or getattr(part.value, "id", None) in constants:
            out[-1] += part.value if isinstance(part, ast.Constant) else constants[part.value.id]
        else:
            out.append("")
            holes.append(part.value)
    return out


def normalise(text):
    return " ".join(text.split())


def key_of(template):
    longest = max((normalise(run).strip(STRIP) for run in template), key=len)
    return longest[:KEY_LENGTH].rstrip() if len(longest) >= MIN_KEY else ""


def callee(call):
    return getattr(call.func, "id", None) or getattr(call.func, "attr", "")


@cache
def raised_messages():
    """{(file, line, column): literal runs} of every message a `raise` can carry."""
    files = list(pack_files())
    constants = string_constants(files)
    todo, returns, assigned = [], {}, {}  # [(file, scope, node)]; name -> [...]; (scope, variable) -> [...]
    for file, tree in files:
        for scope in (node for node in ast.walk(tree) if isinstance(node, (ast.Module, *FUNCTION))):
            for node in own_nodes(scope):
                if isinstance(node, ast.Raise) and node.exc:
                    todo.append((file, scope, node.exc))
                elif isinstance(node, ast.Return) and node.value:
                    returns.setdefault(scope.name, []).append((file, scope, node.value))
                elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)) and node.value:
                    for target in getattr(node, "targets", [getattr(node, "target", None)]):
                        assigned.setdefault((scope, getattr(target, "id", None)), []).append((file, scope, node.value))
                elif isinstance(node, ast.Call) and callee(node) == "append" and isinstance(node.func.value, ast.Name):
                    assigned.setdefault((scope, node.func.value.id), []).extend((file, scope, a) for a in node.args)
    messages, seen = {}, set()
    while todo:
        file, scope, node = todo.pop()
        if node in seen:
            continue
        seen.add(node)
        holes = []  # where text stops: the variables and calls in there are followed, their strings are not text
        template = runs(node, constants[file], holes)
        if template is not None:
            messages[file, node.lineno, node.col_offset] = template
        elif isinstance(node, (ast.BoolOp, ast.IfExp, ast.List, ast.Tuple, ast.BinOp)):  # its parts are text
            todo += [(file, scope, part) for part in ast.iter_child_nodes(node)]
        elif isinstance(node, ast.Call) and callee(node)[:1].isupper():  # an exception: its arguments are text
            todo += [(file, scope, part) for part in node.args + [keyword.value for keyword in node.keywords]]
        else:
            holes.append(node)
        for part in (part for hole in holes for part in ast.walk(hole)):
            if isinstance(part, ast.Call):
                todo += returns.get(callee(part), [])
            elif isinstance(part, ast.Name):
                todo += assigned.get((scope, part.id), [])
    return messages


def troubleshooting_section():
    """(the section's text, the README line number of its first line)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"^## Troubleshooting\n(.*?)(?=^## |\Z)", readme, re.M | re.S)
    assert match, "README.md has no '## Troubleshooting' section"
    return match.group(1), readme.count("\n", 0, match.start(1)) + 1


def test_helpers_and_variables_are_followed():  # each of these reaches its raise only through them
    texts = ["".join(template) for template in raised_messages().values()]
    for fragment in (
        "model folder; this input needs",
        "is a Git LFS pointer",
        "its data stops in the middle",
        "missing keys (first:",
        "could not reach ComfyUI at",
        "ComfyUI refused the workflow",
    ):
        assert any(fragment in text for text in texts), f"{fragment!r} not found (reworded? then update this test)"


def test_every_raised_message_has_a_row():
    section = normalise(troubleshooting_section()[0].replace("\\|", "|").replace("`", "")).casefold()
    missing = [
        f"  {file}:{line}  needs: {key_of(template)!r}"
        for (file, line, _), template in sorted(raised_messages().items())
        if key_of(template).casefold() not in section
    ]
    if missing:
        pytest.fail(
            f"{len(missing)} error message(s) have no row in README.md's Troubleshooting section. Add "
            "a row (`message` | what to do) that quotes the message, with ... for the variable parts; "
            "it must contain the text after 'needs':\n" + "\n".join(missing),
            pytrace=False,
        )


def test_every_row_quotes_a_message_of_the_pack():
    files = list(pack_files())
    constants = string_constants(files)
    corpus = "\0".join(
        normalise(run).casefold()
        for file, tree in files
        for node in ast.walk(tree)
        for run in runs(node, constants[file], []) or []
    )
    section, first_line = troubleshooting_section()
    stale, spans = [], 0
    for number, line in enumerate(section.splitlines(), first_line):
        first_cell = re.split(r"(?<!\\)\|", line)[1] if line.startswith("|") else ""
        for span in re.findall(r"`([^`]+)`", first_cell.replace("\\|", "|")):
            spans += 1
            pieces = [normalise(piece).strip(STRIP).casefold() for piece in re.split(r"\.\.\.|…", span)]
            absent = [piece for piece in pieces if len(piece) >= MIN_PIECE and piece not in corpus]
            if absent and span not in FOREIGN:
                stale.append(f"  README.md:{number}: `{span}`\n      not in the code: {absent}")
    assert spans > 50, "the Troubleshooting section's tables were not found (| `message` | what to do |)"
    if stale:
        pytest.fail(
            "rows of README.md's Troubleshooting section quote text that no message of the pack has "
            "(reworded or removed): update or delete them, or add a message from Python or ComfyUI "
            "to FOREIGN\n" + "\n".join(stale),
            pytrace=False,
        )


if __name__ == "__main__":  # print every message found, with its key
    for (file, line, _), template in sorted(raised_messages().items()):
        print(f"{file}:{line}  {key_of(template)!r}  {'...'.join(map(normalise, template))}")
