"""Command-line flags, each defined once, grouped by topic.

The commands (train, prepare, evaluate, predict, export) take their flags from the topics they need,
so a flag that several of them share (--workdir, --dataset, --flip, ...) has one definition and one
help text. Each topic is a module of this package holding a `TOPIC` and, for the training topics, the
`Section` that holds its values once parsed and checked (semiseg_tf.config nests the sections into a
run's Config). `run_command(main, topics)` starts a command whose `--help` shows its flags topic by
topic (absl alone lists a command's flags in one alphabetical block under the command's name).

Adding an option to a topic: `TOPIC.define` it (with `field=` when the section names it otherwise),
add the field to the topic's Section, and check its value in `Section.check`.
"""
import dataclasses
import functools
import os
import sys

from absl import app, flags

from semiseg_tf import errors


class Topic:
    """A group of flags, shown under `title` in `--help`; `names` are its flags in definition order."""

    def __init__(self, title, module):
        if module == "__main__":
            # A command run with `python -m`: its dotted name. absl files '__main__' flags under
            # sys.argv[0] and lists them again after the docstring, which would show them twice.
            spec = getattr(sys.modules["__main__"], "__spec__", None)
            module = spec.name if spec else "__main__.command"
        self.title = title
        self.module = module
        self.names = []
        self.fields = {}   # {field of the topic's Section: flag name}

    def define(self, kind, name, default, *args, field=None):
        """Defines an absl flag: `kind` is absl's (string, integer, float, boolean, enum, list);
        `args` are the enum values then the help, or the help; `field`: its name in the topic's
        Section, when not the flag's."""
        getattr(flags, f"DEFINE_{kind}")(name, default, *args, module_name=self.module)
        self.names.append(name)
        self.fields[field or name] = name


def shown(value):
    """A parsed value as it would be written on the command line."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value))
    return str(value)


@dataclasses.dataclass(frozen=True)
class Section:
    """The values of one topic's flags, parsed, checked when made, frozen.

    A subclass is a frozen dataclass with one field per flag of its `TOPIC` (named as `TOPIC.fields`
    says). `PARSE` maps a field to `parse(flag_name, value)`, which turns the flag's raw value into
    the field's; `check` raises `ConfigError` naming the flag of a value out of range. Python code
    may make a section directly from parsed values; it is checked the same way.
    """
    TOPIC = None
    PARSE = {}

    def __post_init__(self):
        self.check()

    def check(self):
        """Raises ConfigError if a value is out of its range (subclasses)."""

    @classmethod
    def from_flags(cls, flag_values=flags.FLAGS):
        values = {}
        for field, name in cls.TOPIC.fields.items():
            parse = cls.PARSE.get(field)
            values[field] = parse(name, flag_values[name].value) if parse else flag_values[name].value
        return cls(**values)

    def require(self, condition, field, message, value=None):
        """ConfigError `--flag=value: message` unless `condition`; `value`: as shown, when not the
        field's own."""
        if not condition:
            text = shown(getattr(self, field)) if value is None else value
            raise errors.ConfigError(f"--{self.TOPIC.fields[field]}={text}: {message}")

    def require_range(self, field, low, high=None, open_low=False):
        """ConfigError unless the field's range (a, b) has low <= a (low < a with `open_low`),
        a <= b, and b <= high when `high` is given."""
        a, b = getattr(self, field)
        within = (low < a if open_low else low <= a) and a <= b and (high is None or b <= high)
        bounds = f"{low} {'<' if open_low else '<='} a <= b" + ("" if high is None else f" <= {high}")
        self.require(within, field, f"expected 'a:b' with {bounds}", value=f"{a}:{b}")


def parse_ints(count):
    """A PARSE function for 'a,b,...': `count` positive integers; none given is None."""
    def parse(name, text):
        if not text:
            return None
        try:
            values = tuple(int(v) for v in text.split(","))
        except ValueError:
            raise errors.ConfigError(f"--{name}={text!r}: expected {count} comma-separated "
                                     "integers") from None
        if len(values) != count or min(values) <= 0:
            raise errors.ConfigError(f"--{name}={text!r}: expected {count} positive comma-separated "
                                     "integers")
        return values
    return parse


def parse_range(name, text):
    """A PARSE function for 'a:b' (or 'p', meaning p:p): a pair of numbers."""
    try:
        parts = tuple(float(v) for v in text.split(":"))
    except ValueError:
        parts = ()
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2:
        raise errors.ConfigError(f"--{name}={text!r}: expected 'a:b' (or 'p' for p:p) with numbers")
    return parts


def parse_numbers(kind):
    """A PARSE function for numbers of `kind` (int or float): a list flag's values, or a string
    flag's comma-separated text."""
    def parse(name, values):
        if isinstance(values, str):
            values = values.split(",")
        try:
            return tuple(kind(v) for v in values)
        except ValueError:
            raise errors.ConfigError(f"--{name}={','.join(values)}: expected comma-separated "
                                     "numbers") from None
    return parse


def absolute_path(name, path):
    """A PARSE function: a path as given, made absolute (~ expanded); None stays None."""
    return os.path.abspath(os.path.expanduser(path)) if path else path


def help_text(topics, flag_values=flags.FLAGS):
    """The help of `topics`' flags, one titled section per topic."""
    sections = []
    for topic in topics:
        # module_help renders "\nMODULE:\n  --flag: ..."; the topic's title replaces the module name.
        lines = flag_values.module_help(topic.module).strip("\n").splitlines()[1:]
        sections.append(f"{topic.title}:\n" + "\n".join(lines))
    return "\n\n".join(sections)


def run_command(main, topics):
    """`app.run(main)`, with `--help` showing the command's docstring and then `topics`' flags.

    absl's `--help` prints the main module's docstring and the flags that module defines or adopts;
    the commands define and adopt none, so the grouped text appended here is the whole list. The
    help is printed before TensorFlow is loaded: a command imports its heavy modules in the
    functions that use them, which run after it.
    """
    module = sys.modules["__main__"]
    grouped = help_text(topics).replace("%", "%%")   # absl %-formats the docstring
    module.__doc__ = ((module.__doc__ or "").rstrip() + "\n\n--flagfile=FILE reads flags from a file "
                      "(one --name=value per line);\n--helpfull lists every flag of every module.\n\n"
                      + grouped + "\n")
    if any(arg in ("-h", "--help", "-help", "--helpshort", "-?") for arg in sys.argv[1:]):
        # absl's --help exits with status 1; asking for help is not a failure.
        app.usage(shorthelp=True, writeto_stdout=True, exitcode=0)
    import semiseg_tf
    semiseg_tf.load()
    app.run(functools.partial(reporting_errors, main))


def reporting_errors(main, argv):
    """`main(argv)`, with the errors of `errors.EXIT_STATUS` reported as one line each."""
    try:
        return main(argv)
    except errors.REPORTED as error:
        return errors.report(error)
