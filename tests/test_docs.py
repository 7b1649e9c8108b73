"""Docs that cannot rot: every `python -m softmax_exp...` command in the README and docs/ still works.

Hydra commands are composed in this process, every value a sweep takes at least once, and checked by the
schema; the report's and the results' commands are parsed by their own command lines. A renamed key, option
or flag fails here, not for a reader.
"""

import math
import re
import shlex

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep
from omegaconf import OmegaConf

from softmax_exp import report, results
from softmax_exp.config import unknown_keys, validate
from softmax_exp.schema import PROJECT_ROOT

PAGES = [PROJECT_ROOT / "README.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]
# A command runs to the end of its line, of an inline code span, or to a shell comment.
COMMAND = re.compile(r"python -m (softmax_exp(?:\.\w+)*)((?: +[^`#\n]+)?)")
PARSERS = {"softmax_exp.report": report.parser, "softmax_exp.results": results.parser}


def commands() -> list[tuple[str, str, list[str]]]:
    found = {}
    for page in PAGES:
        for match in COMMAND.finditer(page.read_text()):
            text = match.group(0).strip()
            found.setdefault(text, (f"{page.name}: {text}", match.group(1), shlex.split(match.group(2))))
    return list(found.values())


COMMANDS = commands()


def test_the_docs_hold_commands_of_each_entry_point():
    assert {module for _, module, _ in COMMANDS} == {"softmax_exp", *PARSERS}


def overrides_of(where: str, args: list[str]) -> list[str]:
    """The command line less Hydra's flags: -m (a sweep) and --cfg KIND (print the config)."""
    overrides = []
    for arg, before in zip(args, [None, *args], strict=False):
        if arg in ("-m", "--multirun", "--cfg", "-c") or before in ("--cfg", "-c"):
            continue
        assert not arg.startswith("-"), f"{where}: {arg} is a flag this test does not know"
        overrides.append(arg)
    return overrides


def swept_values(override) -> list:
    """A grid's values, or both ends of a search's interval."""
    value = override.value()
    return [value.start, value.end] if isinstance(value, IntervalSweep) else list(override.sweep_string_iterator())


def jobs(overrides: list[str]) -> list[list[str]]:
    """Enough of a sweep's jobs that each value of each swept key is composed once: job i takes each key's
    i-th value (its last, when it has fewer). A named experiment's own sweep comes first, the command's after."""
    parser = OverridesParser.create()
    parsed = parser.parse_overrides(overrides)
    experiment = next((o.get_value_element_as_str() for o in parsed if o.key_or_group == "experiment"), None)
    own = [f"{key}={value}" for key, value in results.sweeper_params(experiment).items()] if experiment else []
    values = {}
    for override in [*parser.parse_overrides(own), *parsed]:
        key = override.key_or_group
        swept = override.is_sweep_override()
        values[key] = [f"{key}={v}" for v in swept_values(override)] if swept else [override.input_line]
    count = max((len(options) for options in values.values()), default=1)
    return [[options[min(i, len(options) - 1)] for options in values.values()] for i in range(count)]


@pytest.mark.parametrize(("where", "module", "args"), COMMANDS, ids=[where for where, _, _ in COMMANDS])
def test_every_command_in_the_docs_is_accepted(where, module, args):
    assert module in ("softmax_exp", *PARSERS), f"{where}: no entry point {module}"
    if module in PARSERS:
        PARSERS[module]().parse_args(args)  # argparse exits with its usage line on an unknown flag
        return
    sweep = jobs(overrides_of(where, args))
    with initialize_config_dir(version_base="1.3", config_dir=str(PROJECT_ROOT / "conf")):
        for job in sweep:
            cfg = compose("config", overrides=job, return_hydra_config=True)
            assert not unknown_keys(cfg), f"{where}: {unknown_keys(cfg)} in {job}"
            validate(cfg)


def test_a_renamed_key_or_option_in_a_documented_command_fails():
    renamed_key, renamed_option = jobs(["lrr=0.1"]), jobs(["loss=torch,sratch"])
    with initialize_config_dir(version_base="1.3", config_dir=str(PROJECT_ROOT / "conf")):
        with pytest.raises(Exception, match="lrr"):
            compose("config", overrides=renamed_key[0])
        compose("config", overrides=renamed_option[0])
        with pytest.raises(Exception, match="sratch"):
            compose("config", overrides=renamed_option[1])
    with pytest.raises(SystemExit):
        report.parser().parse_args(["--runs"])


LINK = re.compile(r"\]\((?!https?:)([^)#\s]*)(?:#([^)\s]+))?\)")


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


@pytest.mark.parametrize("page", PAGES, ids=[page.name for page in PAGES])
def test_every_link_in_the_docs_leads_somewhere(page):
    for target, fragment in LINK.findall(page.read_text()):
        path = (page.parent / target).resolve() if target else page
        assert path.exists(), f"{page.name} links to {target}, which is not there"
        if fragment and path.suffix == ".md":
            headings = [line.lstrip("#") for line in path.read_text().splitlines() if line.startswith("#")]
            assert fragment in {anchor(h) for h in headings}, (
                f"{page.name} links to {target}#{fragment}: no such heading"
            )


@pytest.mark.parametrize("group", ["loss", "labels", "optimizer"])
def test_the_configuration_page_names_every_option_of_each_group(group):
    """docs/configuration.md's table of groups, against conf/: a new or renamed option fails here."""
    text = (PROJECT_ROOT / "docs" / "configuration.md").read_text()
    (row,) = [line for line in text.splitlines() if line.startswith(f"| `{group}` |")]
    named = set(re.findall(r"`(\w+)`", row.split("|")[2]))
    assert named == {path.stem for path in (PROJECT_ROOT / "conf" / group).glob("*.yaml")}


def test_the_readmes_table_of_named_experiments_is_conf_experiment():
    """Each file of conf/experiment/ has a row, with the number of jobs its sweep makes."""
    rows = re.findall(r"^\| `(\w+)` \| .* \| (\d+) \|$", (PROJECT_ROOT / "README.md").read_text(), re.MULTILINE)
    parser = OverridesParser.create()
    counts = {}
    for path in (PROJECT_ROOT / "conf" / "experiment").glob("*.yaml"):
        sweeper = OmegaConf.load(path).hydra.sweeper
        if "n_trials" in sweeper:  # a search: each trial once per seed
            counts[path.stem] = sweeper.n_trials * len(sweeper.get("seeds", [0]))
            continue
        swept = parser.parse_overrides([f"{k}={v}" for k, v in results.sweeper_params(path.stem).items()])
        counts[path.stem] = math.prod(len(list(o.sweep_string_iterator())) for o in swept if o.is_sweep_override())
    assert {name: int(jobs) for name, jobs in rows} == counts
