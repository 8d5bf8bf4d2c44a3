r"""One notation: book/notation.md lists every symbol family, and the chapters use the choices made.

Issue 17 found symbols whose meaning changed from chapter to chapter: $d$ was *done* in one chapter
and *terminated* in others (and TD3's policy delay), $\tau$ a trajectory, *terminated*, the Polyak
rate and an agent's history, $G$ the return and REDQ's update-to-data ratio, $\mu$ the behaviour
policy and the actor, agents $i$ in one chapter and $a$ in the next. book/notation.md now gives
each symbol one meaning (and lists the few letters that still carry two); these tests hold the
page and the chapters to it:

- the notation page has a row for each symbol family the book uses, and no symbol in two rows;
- its table of choices names each clash the issue found;
- no chapter's markdown uses a retired meaning. Each retired usage is matched by the *form* it
  took in maths (``\\gamma(1 - d)`` is a bootstrap mask, so $d$ there is *terminated*;
  ``p_\\theta(\\tau)`` is a trajectory), not by a fuzzy search for the letter, so prose and the
  meanings that stay are never flagged.

Only markdown cells are read: code cells and their outputs are the code's business.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTATION = ROOT / "book" / "notation.md"
NOTEBOOKS = sorted(p for p in (ROOT / "notebooks").glob("*.ipynb") if not p.name.startswith("."))

# Code spans and fences are skipped; maths is $$...$$ or $...$ (which may span lines).
SEGMENTS = re.compile(r"(```.*?```|`[^`\n]*`)|(\$\$.*?\$\$|\$[^$]+?\$)", re.S)

# Symbols (as written in the first column of the notation page's tables) that must have a row:
# one per family, SAC's, C51's, batch normalisation's, REDQ's and the multi-agent chapters'.
REQUIRED = [
    # flags, returns, trajectories
    r"$d_{t+1}$",
    r"$\mathrm{term}_{t+1}$",
    r"$\mathrm{trunc}_{t+1}$",
    r"$G_t$",
    r"$G_t^\lambda$",
    r"$\omega$",
    r"$\delta_t$",
    r"$\hat A_t$",
    # policies and parameters
    r"$\pi_\theta(a \mid s)$",
    r"$\pi_{\mathrm b}(a \mid s)$",
    r"$\mu_\theta(s)$",
    r"$\ell$",
    r"$\eta$",
    # V-trace, policy gradients, PPO
    r"$\rho_t$",
    r"$c_t$",
    r"$c_1$",
    r"$c_2$",
    r"$r_t(\theta)$",
    r"$\epsilon$",
    r"$\beta$",
    r"$\widehat{\mathrm{KL}}$",
    r"$\mathrm{KL}_{\text{targ}}$",
    # value-based, C51
    r"$\tau$",
    r"$C$",
    r"$z_i$",
    r"$p_i(s, a)$",
    r"$m_i$",
    # continuous control, SAC, REDQ, TD3
    r"$n_{\text{delay}}$",
    r"$\alpha$",
    r"$\nu_\theta(s)$",
    r"$u$",
    r"$\xi$",
    r"$N$",
    r"$\mathrm{UTD}$",
    # batch (re)normalisation
    r"$\nu_B$",
    r"$\nu_{\mathrm{run}}$",
    r"$\gamma_{\mathrm{BN}}$",
    r"$m_{\mathrm{BN}}$",
    r"$r_{\mathrm{BR}}$",
    r"$d_{\mathrm{BR}}$",
    # multi-agent
    r"$n$",
    r"$i$",
    r"$o^i_t$",
    r"$u^i_t$",
    r"$h^i$",
    r"$Q_i$",
    r"$Q_{tot}$",
    r"$\kappa$",
]

# The clashes issue 17 names: each must be a row of the page's table of choices.
CLASHES = [r"$d$", r"$\tau$", r"$G$", r"$\mu$", "agent index"]

# Retired usages: (what it meant, pattern). "math" patterns are searched in maths segments only,
# "text" patterns in the markdown outside code spans (maths included).
BANNED_MATH = [
    (
        "d for terminated: gamma (1 - d) is a bootstrap mask",
        r"\\gamma(?:\\[,;!]|\s)*\(1\s*-\s*d(?![A-Za-z])",
    ),
    ("d for terminated in a transition tuple", r"s',\s*d\s*\)"),
    ("d for PPO's KL target", r"d_\{?\\text\{targ"),
    ("d for the distance of a regression", r"(?<![A-Za-z\\{])d\s*(?:\\big|\\Big)?\(\s*(?:x|V)"),
    (
        "d for batch renormalisation's shift",
        r"(?<![A-Za-z\\{])d\s*=\s*\\operatorname\{clip|r\s*\+\s*d(?![A-Za-z_])",
    ),
    ("d for TD3's policy delay", r"every\s*\}?\s*d(?![A-Za-z_{])"),
    ("tau for terminated", r"\\tau_\{?t"),
    (
        "tau for a trajectory or an agent's history",
        r"\\tau\s*(?:\^|'|\\sim|=\s*\()|\(\s*\\tau|_\\tau|\\boldsymbol\\tau",
    ),
    (
        "G for the update-to-data ratio",
        r"(?<![A-Za-z\\])G\s*(?:[=<>]\s*[0-9]|=\s*\\frac)|^\s*G\s*$",
    ),
    ("mu for the behaviour policy", r"\\mu\s*\(\s*a|\\pi\s*/\s*\\mu|\\log\s*\\mu|\\pi\s*=\s*\\mu"),
    (
        "mu for a mean",
        r"\\mu_(?:B|[0-9])|\\mathcal N\([^)]*\\mu|\\tanh\(\\mu|\\mu\s*,\s*(?:\\sigma|v)",
    ),
    (
        "beta for the behaviour policy or an entropy coefficient",
        r"\\beta\s*\(\s*a|\\beta\\?,?\s*\\mathcal\{?H|\\frac\{\\beta\}",
    ),
    (
        "rho for a distribution or MPE's local ratio",
        r"\\rho_0|\\rho\^|\\rho_\\pi|\(1\s*-\s*\\rho\)",
    ),
    ("c_V for the critic coefficient", r"c_V"),
    (
        "a for the agent index",
        r"Q_a(?![A-Za-z])|Q\^-_a|[ouh]\^a(?![A-Za-z])|\\sum_\{a=1\}\^n|agent\s*\}\s*a\b",
    ),
]
BANNED_TEXT = [
    ("a for the agent index", r"agent \$a\$"),
    ("G for the update-to-data ratio", r"(?<![\w`$-])G(?![\w`$-])"),
]


def markdown_cells(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as f:
        nb = json.load(f)
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown"]


def maths(text: str) -> list[str]:
    return [m.group(2).strip("$") for m in SEGMENTS.finditer(text) if m.group(2)]


def prose(text: str) -> str:
    """The markdown without code spans and without maths."""
    return SEGMENTS.sub(" ", text)


def table_rows(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not re.match(r"^\|[-| :]+\|\s*$", line):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def page_symbols() -> list[list[str]]:
    """The symbols of each row of the notation page's symbol tables (not the choices table)."""
    text = NOTATION.read_text(encoding="utf-8")
    symbols = text[: text.index("## The end of an episode")]
    out = []
    for row in table_rows(symbols):
        if row[0] == "Symbol":
            continue
        out.append(["$" + s + "$" for s in re.findall(r"\$([^$]+)\$", row[0])])
    return out


def test_notation_page_has_a_row_for_every_symbol_family():
    listed = {s for row in page_symbols() for s in row}
    missing = [s for s in REQUIRED if s not in listed]
    assert not missing, f"book/notation.md has no row for: {missing}"


def test_no_symbol_is_listed_twice():
    seen: dict[str, int] = {}
    for row in page_symbols():
        for s in row:
            seen[s] = seen.get(s, 0) + 1
    twice = sorted(s for s, n in seen.items() if n > 1)
    assert not twice, f"book/notation.md lists these symbols in more than one row: {twice}"


def test_choices_table_names_each_clash_of_the_issue():
    text = NOTATION.read_text(encoding="utf-8")
    choices = text[text.index("## One meaning per symbol") :]
    first = [row[0] for row in table_rows(choices)]
    missing = [c for c in CLASHES if c not in first]
    assert not missing, f"the table of choices in book/notation.md has no row for {missing}"


def violations(text: str) -> list[str]:
    found = []
    for segment in maths(text):
        for meaning, pattern in BANNED_MATH:
            for m in re.finditer(pattern, segment, re.M):
                found.append(f"{meaning}: ...{segment[max(0, m.start() - 30) : m.end() + 20]}...")
    outside_code = SEGMENTS.sub(lambda m: m.group(2) or " ", text)
    plain = prose(text)
    for meaning, pattern in BANNED_TEXT:
        target = plain if "(?<![" in pattern else outside_code
        for m in re.finditer(pattern, target):
            found.append(f"{meaning}: ...{target[max(0, m.start() - 40) : m.end() + 20]}...")
    return found


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_chapter_markdown_follows_the_notation(path):
    found = [v for cell in markdown_cells(path) for v in violations(cell)]
    assert not found, f"{path.name} uses retired notation (see book/notation.md):\n" + "\n".join(
        found
    )


@pytest.mark.parametrize(
    "snippet",
    [
        r"$y = r + \gamma\,(1 - d)\, Q$",
        r"$\mathbb E_{(s,a,r,s',d) \sim \mathcal D}$",
        r"every $d$-th step: $\text{ every } d \text{ steps}$",
        r"$p_\theta(\tau) = \prod$",
        r"$\delta_t = r + \gamma(1 - \tau_{t+1}) V$",
        r"$G = 20$ updates",
        r"the ratio $\pi/\mu$",
        r"$\tanh(\mu_\theta(s) + \sigma)$ and $\mu_B$",
        r"agent $a$ picks $u^a$ from $\tau^a$ and $Q_a$",
        r"$c_V\, d\big(V_\phi(s_t), \hat G_t\big)$",
        r"the loop calls `update` **G** times",
    ],
)
def test_each_retired_usage_is_caught(snippet):
    assert violations(snippet), f"the check misses a retired usage: {snippet}"


@pytest.mark.parametrize(
    "snippet",
    [
        r"$\hat A_t = \delta_t + \gamma\lambda\,(1 - d_{t+1})\,\hat A_{t+1}$",
        r"$\theta^- \leftarrow (1 - \tau)\,\theta^- + \tau\,\theta$, a lag of $1/\tau$",
        r"$L_\mu(\theta) = -Q(s, \mu_\theta(s))$, $p^\mu(s)$, $\mu_{\theta'}(s')$",
        r"$\frac{d a_j}{d u_j}$ and $\int p(s')\, ds'$",
        r"$G_t = r_{t+1} + \gamma G_{t+1}$ and $\mathbb E[G]$",
        r"`G = 5` in code and `(QMIX-1)`",
        r"$Q_{tot} = \sum_{i=1}^n Q_i(h^i, u^i)$",
    ],
)
def test_meanings_that_stay_are_not_flagged(snippet):
    assert not violations(snippet), f"the check flags a correct usage: {snippet}"


# alpha is SAC's temperature, in SAC's chapter and the two built on it; a step size is eta
ALPHA_CHAPTERS = ("11_", "12_", "13_")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_alpha_is_the_temperature_only(path):
    if path.name.startswith(ALPHA_CHAPTERS):
        return
    found = [seg for cell in markdown_cells(path) for seg in maths(cell) if "\\alpha" in seg]
    assert not found, f"{path.name} writes alpha outside SAC's chapters (a step size is eta): {found}"
