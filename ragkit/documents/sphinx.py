"""Sphinx's roles and directives for plain docutils: their content as text, never a diagnostic.

Plain docutils knows none of Sphinx's markup (``:func:``, ``:ref:``, ``.. versionadded::``,
``.. code-block::``...) and turns each use into an error message inside the document. While
ragkit parses, :func:`sphinx_markup` makes every role or directive docutils does not know
resolve to a generic one instead: a role becomes its visible text (``:ref:`Title <label>```
reads ``Title``, ``:func:`~os.path.join``` reads ``join``), a directive keeps its arguments
and body, code directives keep their code as a code block, and directives that only steer a
build (``toctree``, ``index``, ``highlight``...) leave nothing. Names docutils does know
keep their docutils meaning.
"""

from __future__ import annotations

import contextlib
import re
import threading

from docutils import nodes, utils
from docutils.parsers.rst import Directive, directives, roles

_LOCK = threading.RLock()
_TITLE_TARGET = re.compile(r"^(?P<title>.+?)\s*<(?P<target>[^<>]+)>$", re.DOTALL)
CODE_ROLES = frozenset(
    "func meth class mod attr data exc obj const command program option envvar file samp kbd "
    "code member var type macro enum enumerator struct union expr texpr".split()
)
BUILD_ONLY = frozenset(
    "toctree index highlight currentmodule default-domain tabularcolumns sectionauthor "
    "codeauthor moduleauthor autosummary only-html ifconfig-off".split()
)
CODE_DIRECTIVES = frozenset(
    "code-block sourcecode code doctest testcode testoutput testsetup testcleanup ipython "
    "jupyter-execute prompt productionlist math".split()
)
INCLUDES = frozenset({"literalinclude", "include"})
LEADS = {
    "versionadded": "New in version {}",
    "versionchanged": "Changed in version {}",
    "deprecated": "Deprecated since version {}",
    "versionremoved": "Removed in version {}",
    "seealso": "See also",
}


def role_text(name: str, text: str) -> str:
    """What a reader sees of ``:name:`text```, as Sphinx would render it."""
    text = utils.unescape(text).strip()
    explicit = _TITLE_TARGET.match(text)
    if explicit and name not in ("abbr", "math"):
        return explicit.group("title").strip()
    text = text.lstrip("!")
    if text.startswith("~"):
        text = text[1:].rsplit(".", 1)[-1]
    if name == "pep":
        return f"PEP {text}"
    if name == "rfc":
        return f"RFC {text}"
    if name == "guilabel":
        return text.replace("&&", "\x00").replace("&", "").replace("\x00", "&")
    if name == "menuselection":
        return text.replace("-->", ">")
    return text


def _generic_role(name, rawtext, text, lineno, inliner, options=None, content=None):
    shown = role_text(name.rsplit(":", 1)[-1].lower(), text)
    if name.rsplit(":", 1)[-1].lower() in CODE_ROLES:
        return [nodes.literal(rawtext, shown)], []
    return [nodes.Text(shown)], []


class _AnyOption(dict):
    """An option spec that accepts every option as plain text (never empty: docutils reads
    options only when a spec is truthy)."""

    def __init__(self):
        super().__init__(class_=directives.unchanged)

    def __missing__(self, key):
        return directives.unchanged


class _Lenient(Directive):
    """Any arguments, any options, any body: what an unknown directive may carry."""

    has_content = True
    optional_arguments = 64
    final_argument_whitespace = True
    option_spec = _AnyOption()


class _Generic(_Lenient):
    """An unknown directive: its arguments as a lead paragraph, then its body as reST."""

    def _lead(self) -> str:
        """The arguments as a reader sees them: ``versionadded 3.4 text`` → ``New in version
        3.4: text``; ``seealso text`` → ``See also: text``; any other directive's as written."""
        words = " ".join(self.arguments).split()
        form = LEADS.get(self.name.rsplit(":", 1)[-1].lower())
        if form is None:
            return " ".join(words)
        if "{}" in form:
            head, rest = form.format(words[0] if words else "").strip(), " ".join(words[1:])
        else:
            head, rest = form, " ".join(words)
        return f"{head}: {rest}" if rest else head

    def run(self):
        container = nodes.container()
        lead = self._lead()
        if lead:
            inline, _ = self.state.inline_text(lead, self.lineno)
            paragraph = nodes.paragraph(lead, "", *inline)
            paragraph.line = self.lineno
            container += paragraph
        if self.content:
            self.state.nested_parse(self.content, self.content_offset, container)
        return [container]


class _Code(_Lenient):
    """``code-block`` and kin: the code kept verbatim as a literal block."""

    def run(self):
        code = "\n".join(self.content)
        if not code.strip():
            return []
        block = nodes.literal_block(code, code)
        block.line = self.content_offset + 1
        return [block]


class _Dropped(_Lenient):
    """A directive that steers a build and has nothing to read (``toctree``, ``index``)."""

    def run(self):
        return []


class _Include(_Dropped):
    """``literalinclude`` / ``include``: other files are never read; the skip is noted."""

    def run(self):
        notes = getattr(self.state.document.settings, "ragkit_notes", None)
        if notes is not None:
            notes.append(f"{self.name} {' '.join(self.arguments)} not read (other files are never included)")
        return []


def _directive_for(name: str):
    base = name.rsplit(":", 1)[-1].lower()
    if base in INCLUDES:
        return _Include
    if base in CODE_DIRECTIVES:
        return _Code
    if base in BUILD_ONLY:
        return _Dropped
    return _Generic


@contextlib.contextmanager
def sphinx_markup():
    """While active, unknown roles and directives resolve to the generic ones above.

    docutils looks both up through module functions at parse time; they are wrapped for the
    duration and restored after, under a lock, so nothing outlives one parse.
    """
    with _LOCK:
        original_role, original_directive = roles.role, directives.directive

        def role(role_name, language_module, lineno, reporter):
            found, messages = original_role(role_name, language_module, lineno, reporter)
            return (found, messages) if found is not None else (_generic_role, [])

        def directive(directive_name, language_module, document):
            base = directive_name.rsplit(":", 1)[-1].lower()
            if base in INCLUDES or (base in CODE_DIRECTIVES and base != "math"):
                return _directive_for(directive_name), []
            found, messages = original_directive(directive_name, language_module, document)
            return (found, messages) if found is not None else (_directive_for(directive_name), [])

        roles.role, directives.directive = role, directive
        try:
            yield
        finally:
            roles.role, directives.directive = original_role, original_directive


def strip_diagnostics(tree) -> None:
    """Remove every system message and turn each ``problematic`` node back into its text."""
    for message in list(tree.findall(nodes.system_message)):
        message.parent.remove(message)
    for problem in list(tree.findall(nodes.problematic)):
        problem.parent.replace(problem, nodes.Text(problem.astext()))
