"""Kestra's expression syntax (Pebble) translated into jinja2's, before jinja2's lexer sees it.

Pebble and jinja2 share the `{{ }}` / `{% %}` shape but not the expression grammar: Pebble has `??`, `???`,
`a ? b : c`, `equals`, `contains`, `isIn`, `elseif`, a zero-based `loop.index`, an inclusive `range`, and
other operator precedences (`-7 | abs` is 7, `a ~ b | upper` upper-cases both). Each expression is parsed
here with Pebble's precedences and written back as a fully parenthesised jinja2 expression that calls the
helpers named `_kx_*` (registered as globals by the environment). Text outside the delimiters, comments and
`{% raw %}` blocks are left untouched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from jinja2 import TemplateSyntaxError

__all__ = ["translate"]

# Pebble's binary operator precedences (CoreExtension, plus Kestra's `??`/`???` and `in`/`isIn`).
BINARY = {
    "or": 10,
    "and": 15,
    "is": 20,
    "contains": 20,
    "==": 30,
    "equals": 30,
    "!=": 30,
    "<": 30,
    ">": 30,
    "<=": 30,
    ">=": 30,
    "in": 30,
    "not in": 30,
    "isIn": 30,
    "+": 40,
    "-": 40,
    "*": 60,
    "/": 60,
    "%": 60,
    "|": 100,
    "~": 110,
    "..": 120,
    "??": 120,
    "???": 120,
}
NOT_PRECEDENCE = 5  # Pebble's `not` takes everything above `or`... and `and`: `not a and b` is `not (a and b)`
UNARY_SIGN_PRECEDENCE = 500

OPERATORS = sorted(
    ["???", "??", "==", "!=", "<=", ">=", "..", "?", ":", "<", ">", "+", "-", "*", "/", "%", "~", "|", ".", ",",
     "(", ")", "[", "]", "{", "}", "="],
    key=len,
    reverse=True,
)  # fmt: skip
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
NUMBER = re.compile(r"\d+(\.\d+)?([eE][+-]?\d+)?[lLdDfF]?")
ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", "'": "'", '"': '"'}
TESTS = {"null": "_kx_null", "empty": "_kx_empty", "json": "_kx_json", "map": "_kx_map", "iterable": "_kx_iterable"}
CONSTANTS = {"true": "true", "false": "false", "null": "none", "none": "none", "TRUE": "true", "FALSE": "false",
             "NULL": "none", "True": "true", "False": "false", "None": "none"}  # fmt: skip
PASS_TAGS = {"else", "endif", "endfor", "endmacro", "endfilter", "endblock", "endset", "endautoescape", "endraw"}
UNSUPPORTED_TAGS = {"include", "extends", "import", "from", "embed", "parallel", "cache"}


@dataclass
class Token:
    kind: str  # "name", "num", "str", "interp" (a double-quoted string with #{...}), "op", "end"
    value: str
    pos: int


def _string(source: str, i: int) -> tuple[str, int]:
    quote, i, out = source[i], i + 1, []
    while i < len(source):
        ch = source[i]
        if ch == "\\" and i + 1 < len(source):
            nxt = source[i + 1]
            out.append(ESCAPES.get(nxt, "\\" + nxt))
            i += 2
        elif ch == quote:
            return "".join(out), i + 1
        else:
            out.append(ch)
            i += 1
    raise TemplateSyntaxError("unclosed string literal", 1)


def tokenize(source: str, start: int, closer: str) -> tuple[list[Token], int]:
    """Tokens from `start` up to `closer` (`}}` or `%}`, optionally preceded by `-`) outside brackets."""
    tokens: list[Token] = []
    depth, i, n = 0, start, len(source)
    while i < n:
        ch = source[i]
        if ch.isspace():
            i += 1
            continue
        if depth == 0 and (source.startswith(closer, i) or source.startswith("-" + closer, i)):
            return tokens, i
        if source.startswith("{%", i) or (source.startswith("{{", i) and closer == "%}"):
            raise TemplateSyntaxError(f"'{source[i : i + 2]}' inside a '{{{{ }}}}' or '{{% %}}': close it first", 1)
        if ch in "'\"":
            value, i = _string(source, i)
            tokens.append(Token("interp" if ch == '"' and "#{" in value else "str", value, i))
            continue
        m = NUMBER.match(source, i)
        if ch.isdigit() and m:
            tokens.append(Token("num", m.group(0).rstrip("lLdDfF"), i))
            i = m.end()
            continue
        m = NAME.match(source, i)
        if m:
            tokens.append(Token("name", m.group(0), i))
            i = m.end()
            continue
        for op in OPERATORS:
            if source.startswith(op, i):
                if op in "([{":
                    depth += 1
                elif op in ")]}":
                    depth = max(0, depth - 1)
                tokens.append(Token("op", op, i))
                i += len(op)
                break
        else:
            raise TemplateSyntaxError(f"unexpected character '{ch}'", 1)
    raise TemplateSyntaxError(f"missing '{closer}'", 1)


def _literal(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("'", "\\'").replace("\r", "\\r").replace("\n", "\\n")
    return "'" + escaped + "'"  # line breaks escaped: jinja2 would normalise a raw CR LF


class Parser:
    """Pebble's expression grammar (precedence climbing), emitting jinja2 expression text."""

    def __init__(self, tokens: list[Token]):
        self.tokens = [*tokens, Token("end", "", -1)]
        self.i = 0

    # -- token helpers ---------------------------------------------------------------------------------

    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def peek(self, k: int = 1) -> Token:
        return self.tokens[min(self.i + k, len(self.tokens) - 1)]

    def at(self, *values: str) -> bool:
        return self.tok.kind in ("op", "name") and self.tok.value in values

    def take(self) -> Token:
        tok = self.tok
        self.i += 1
        return tok

    def expect(self, value: str) -> None:
        if not self.at(value):
            found = self.tok.value or "the end of the expression"
            raise TemplateSyntaxError(f"expected '{value}', found '{found}'", 1)
        self.i += 1

    def name(self) -> str:
        if self.tok.kind != "name":
            raise TemplateSyntaxError(f"expected a name, found '{self.tok.value or 'the end'}'", 1)
        return self.take().value

    def done(self) -> None:
        if self.tok.kind != "end":
            raise TemplateSyntaxError(f"unexpected '{self.tok.value}'", 1)

    # -- grammar ---------------------------------------------------------------------------------------

    def expression(self, min_precedence: int = 0) -> str:
        left = self.unary()
        while True:
            op = self.binary_operator()
            if op is None or BINARY[op] < min_precedence:
                break
            self.i += 2 if op == "not in" else 1
            left = self.binary(op, left)
        if min_precedence == 0:
            if self.at("?"):
                self.take()
                then = self.expression()
                self.expect(":")
                otherwise = self.expression()
                left = f"(({then}) if ({left}) else ({otherwise}))"
            elif self.at("if") and self.tok.kind == "name":  # jinja2's inline if, kept for existing flows
                self.take()
                condition = self.expression(11)
                otherwise = "none"
                if self.at("else"):
                    self.take()
                    otherwise = self.expression()
                left = f"(({left}) if ({condition}) else ({otherwise}))"
        return left

    def binary_operator(self) -> str | None:
        tok = self.tok
        if tok.kind == "op" and tok.value in BINARY:
            return tok.value
        if tok.kind == "name":
            if tok.value == "not" and self.peek().kind == "name" and self.peek().value == "in":
                return "not in"
            if tok.value in BINARY:
                return tok.value
        return None

    def binary(self, op: str, left: str) -> str:
        if op == "|":
            return self.filter(left)
        if op == "is":
            return self.test(left)
        right = self.expression(BINARY[op] + 1) if op not in ("??", "???") else self.coalesce_operand()
        simple = {"or": "or", "and": "and", "==": "==", "equals": "==", "!=": "!=", "<": "<", ">": ">",
                  "<=": "<=", ">=": ">=", "in": "in", "not in": "not in", "-": "-", "%": "%"}  # fmt: skip
        if op in simple:
            return f"({left} {simple[op]} {right})"
        helpers = {"contains": "_kx_contains({l}, {r})", "isIn": "_kx_contains({r}, {l})", "+": "_kx_add({l}, {r})",
                   "*": "_kx_mul({l}, {r})", "/": "_kx_div({l}, {r})", "~": "_kx_concat({l}, {r})",
                   "..": "_kx_range({l}, {r})", "??": "_kx_coalesce({l}, {r})",
                   "???": "_kx_undefined_coalesce({l}, {r})"}  # fmt: skip
        if op == "??" and right == "raise":
            return f"_kx_coalesce_or_raise({left})"
        return helpers[op].format(l=left, r=right)

    def coalesce_operand(self) -> str:
        if self.tok.kind == "name" and self.tok.value == "raise":
            self.take()
            return "raise"
        return self.expression(BINARY["??"] + 1)

    def filter(self, left: str) -> str:
        return f"({left}|{self.filter_call()})"

    def filter_call(self) -> str:
        name = self.name()
        return f"{name}({self.call_arguments()})" if self.at("(") else name

    def test(self, left: str) -> str:
        negate = False
        if self.at("not") and self.tok.kind == "name":
            self.take()
            negate = True
        tok = self.take()
        if tok.kind not in ("name",):
            raise TemplateSyntaxError(f"expected a test name after 'is', found '{tok.value}'", 1)
        name = TESTS.get(tok.value, tok.value)
        args = f"({self.call_arguments()})" if self.at("(") else ""
        return f"({left} is {'not ' if negate else ''}{name}{args})"

    def unary(self) -> str:
        if self.at("not") and self.tok.kind == "name":
            self.take()
            return f"(not {self.expression(NOT_PRECEDENCE)})"
        if self.at("-", "+") and self.tok.kind == "op":
            sign = self.take().value
            return f"({sign}{self.expression(UNARY_SIGN_PRECEDENCE)})"
        return self.postfix(self.primary())

    def primary(self) -> str:
        tok = self.take()
        if tok.kind == "str":
            return _literal(tok.value)
        if tok.kind == "interp":
            return _interpolation(tok.value)
        if tok.kind == "num":
            return tok.value
        if tok.kind == "op" and tok.value == "(":
            inner = self.expression()
            self.expect(")")
            return f"({inner})"
        if tok.kind == "op" and tok.value == "[":
            items = self.sequence("]")
            return f"[{', '.join(items)}]"
        if tok.kind == "op" and tok.value == "{":
            pairs = []
            while not self.at("}"):
                key = self.expression()
                self.expect(":")
                pairs.append(f"{key}: {self.expression()}")
                if not self.at("}"):
                    self.expect(",")
            self.take()
            return "{ " + ", ".join(pairs) + " }"
        if tok.kind == "name":
            if tok.value in CONSTANTS:
                return CONSTANTS[tok.value]
            if self.at("("):
                return self.function(tok.value)
            return tok.value
        raise TemplateSyntaxError(f"unexpected '{tok.value or 'end of expression'}'", 1)

    def function(self, name: str) -> str:
        if name == "block":
            self.take()
            block = self.take()
            self.expect(")")
            return f"self.{_identifier(block.value)}()"
        if name == "parent" and self.peek().kind == "op" and self.peek().value == ")":
            self.i += 2
            return "super()"
        return f"{name}({self.call_arguments()})"

    def call_arguments(self) -> str:
        self.expect("(")
        args = []
        while not self.at(")"):
            if self.tok.kind == "name" and self.peek().kind == "op" and self.peek().value == "=":
                key = self.take().value
                self.take()
                args.append(f"{key}={self.expression()}")
            else:
                args.append(self.expression())
            if not self.at(")"):
                self.expect(",")
        self.take()
        return ", ".join(args)

    def sequence(self, closer: str) -> list[str]:
        items = []
        while not self.at(closer):
            items.append(self.expression())
            if not self.at(closer):
                self.expect(",")
        self.take()
        return items

    def postfix(self, value: str) -> str:
        while True:
            if self.at(".") and self.tok.kind == "op":
                self.take()
                tok = self.take()
                if tok.kind not in ("name", "num"):
                    raise TemplateSyntaxError(f"expected an attribute name after '.', found '{tok.value}'", 1)
                attribute = tok.value
                if value == "loop" and attribute in ("index", "revindex"):
                    attribute += "0"  # Pebble's loop.index is zero-based
                if tok.kind == "num":
                    value = f"{value}[{attribute}]"
                elif self.at("("):  # a method call: Pebble reaches Java methods; only a few are mapped
                    value = f"_kx_method({value}, {_literal(attribute)}, {self.call_arguments() or 'none'})"
                else:
                    value = f"{value}.{attribute}"
            elif self.at("[") and self.tok.kind == "op":
                self.take()
                index = self.expression()
                self.expect("]")
                value = f"{value}[{index}]"
            else:
                return value


def _interpolation(text: str) -> str:
    """Pebble's `"Hello #{name}"`: the literal pieces and the printed expressions, concatenated."""
    parts: list[str] = []
    i = 0
    while (start := text.find("#{", i)) >= 0:
        parts.append(_literal(text[i:start]))
        depth, j = 1, start + 2
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        if depth:
            raise TemplateSyntaxError("unclosed '#{' in a string", 1)
        tokens, _ = tokenize(text[start + 2 : j - 1] + "}}", 0, "}}")
        parts.append(expression(tokens))
        i = j
    parts.append(_literal(text[i:]))
    result = parts[0]
    for part in parts[1:]:
        result = f"_kx_concat({result}, {part})"
    return result


def _identifier(text: str) -> str:
    return re.sub(r"\W", "_", text) or "_"


def expression(tokens: list[Token]) -> str:
    parser = Parser(tokens)
    result = parser.expression()
    parser.done()
    return result


def _tag(tokens: list[Token]) -> str:
    if not tokens or tokens[0].kind != "name":
        raise TemplateSyntaxError("a tag must start with its name", 1)
    name, rest = tokens[0].value, tokens[1:]
    if name in PASS_TAGS:
        return name
    if name in UNSUPPORTED_TAGS:
        raise TemplateSyntaxError(f"the '{name}' tag is not supported: flowpods renders each template on its own", 1)
    if name in ("if", "elseif", "elif"):
        return ("if " if name == "if" else "elif ") + expression(rest)
    if name == "for":
        parser = Parser(rest)
        targets = [parser.name()]
        while parser.at(","):
            parser.take()
            targets.append(parser.name())
        parser.expect("in")
        iterable = parser.expression()
        parser.done()
        return f"for {', '.join(targets)} in _kx_iter({iterable}, {len(targets)})"
    if name == "set":
        parser = Parser(rest)
        target = parser.name()
        if parser.tok.kind == "end":
            return f"set {target}"
        parser.expect("=")
        value = parser.expression()
        parser.done()
        return f"set {target} = {value}"
    if name == "filter":
        parser = Parser(rest)
        chain = [parser.filter_call()]
        while parser.at("|"):
            parser.take()
            chain.append(parser.filter_call())
        parser.done()
        return "filter " + "|".join(chain)
    if name == "block":
        if not rest:
            raise TemplateSyntaxError("a block needs a name", 1)
        return f"block {_identifier(rest[0].value)}"
    if name == "macro":
        parser = Parser(rest)
        macro = parser.name()
        parser.expect("(")
        params = []
        while not parser.at(")"):
            param = parser.name()
            if parser.at("="):
                parser.take()
                params.append(f"{param}={parser.expression()}")
            else:
                params.append(f"{param}=none")  # Pebble: an argument not passed is null
            if not parser.at(")"):
                parser.expect(",")
        parser.take()
        parser.done()
        return f"macro {macro}({', '.join(params)})"
    if name == "autoescape":
        return "autoescape " + expression(rest) if rest else "autoescape true"
    raise TemplateSyntaxError(f"unknown tag '{name}'", 1)


RAW_END = re.compile(r"\{%-?\s*endraw\s*-?%\}")
RAW_START = re.compile(r"\{%-?\s*raw\s*-?%\}")


def translate(source: str) -> str:
    """The jinja2 text for a Kestra template; raises TemplateSyntaxError naming what Pebble would refuse."""
    out: list[str] = []
    i, n = 0, len(source)
    while i < n:
        j = min((k for k in (source.find("{{", i), source.find("{%", i), source.find("{#", i)) if k >= 0), default=-1)
        if j < 0:
            out.append(source[i:])
            break
        out.append(source[i:j])
        opener = source[j : j + 2]
        if opener == "{#":
            end = source.find("#}", j + 2)
            if end < 0:
                raise TemplateSyntaxError("unclosed comment", 1)
            i = end + 2
            continue
        if opener == "{%" and RAW_START.match(source, j):
            raw_end = RAW_END.search(source, j)
            if not raw_end:
                raise TemplateSyntaxError("missing '{% endraw %}'", 1)
            out.append(source[j : raw_end.end()])
            i = raw_end.end()
            continue
        start = j + 2
        trim_left = source.startswith("-", start)
        closer = "}}" if opener == "{{" else "%}"
        tokens, stop = tokenize(source, start + trim_left, closer)
        trim_right = source.startswith("-", stop)
        body = expression(tokens) if opener == "{{" else _tag(tokens)
        out.append(f"{opener}{'-' if trim_left else ''} {body} {'-' if trim_right else ''}{closer}")
        i = stop + trim_right + 2
    return "".join(out)
