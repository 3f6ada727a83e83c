"""Command-line flags, each defined once, grouped by topic.

The commands (train, prepare, evaluate, predict, export) take their flags from the topics they need,
so a flag that several of them share (--workdir, --dataset, --flip, ...) has one definition and one
help text. Each topic is a module of this package holding a `TOPIC`; `run_command(main, topics)` starts a
command whose `--help` shows its flags topic by topic (absl alone lists a command's flags in one
alphabetical block under the command's name).
"""
import functools
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

    def define(self, kind, name, default, *args):
        """Defines an absl flag: `kind` is absl's (string, integer, float, boolean, enum, list);
        `args` are the enum values then the help, or the help."""
        getattr(flags, f"DEFINE_{kind}")(name, default, *args, module_name=self.module)
        self.names.append(name)


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
    help is printed before TensorFlow is loaded: a command names its heavy modules with
    `semiseg_tf.lazy.module`, which `main` loads.
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
