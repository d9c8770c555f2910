#!/usr/bin/env python3
"""
style_declarations: ARCHITECTURE.md's declaration rule ("Declarations open their function") is
kept by the compiler: CMakeLists.txt compiles every file with -Wdeclaration-after-statement, an
error under -Werror. This proves that it still is: every entry of BUILD_DIR's
compile_commands.json carries both flags, and with the compiler and flags BUILD_DIR uses for a
file of the tree a declaration planted after a statement fails to compile while the same
function with the declaration first compiles. Exits 0 when all of that holds, 1 with the reason
on stdout otherwise (a missing compiler or compile_commands.json is a failure, never a pass).

    tests/style_declarations.py BUILD_DIR
"""
import json
import os
import shlex
import subprocess
import sys
import tempfile

FLAGS = ('-Wdeclaration-after-statement', '-Werror')

PLANTED = """int vb__planted(int a);
int vb__planted(int a)
{
\ta++;
\tint x = a;

\treturn x;
}
"""
CONTROL = """int vb__planted(int a);
int vb__planted(int a)
{
\tint x;

\ta++;
\tx = a;
\treturn x;
}
"""


def fail(why):
    print('# style_declarations: ' + why)
    sys.exit(1)


def compile_args(entry, source):
    """The entry's compiler and flags, on `source`, syntax only."""
    args = shlex.split(entry['command']) if 'command' in entry else list(entry['arguments'])
    if os.path.basename(args[0]) == 'ccache':
        args = args[1:]
    out, skip = [], False
    for a in args[1:]:
        if skip:
            skip = False
        elif a == '-o':
            skip = True
        elif a not in ('-c', entry['file']):
            out.append(a)
    return [args[0]] + out + ['-fsyntax-only', source]


def main():
    if len(sys.argv) != 2:
        fail('usage: style_declarations.py BUILD_DIR')
    top = os.path.realpath(os.path.join(os.path.dirname(__file__), '..'))
    db = os.path.join(sys.argv[1], 'compile_commands.json')
    try:
        with open(db) as f:
            entries = json.load(f)
    except (OSError, ValueError) as e:
        fail('cannot read %s: %s' % (db, e))
    if not entries:
        fail(db + ' lists no compile')
    for e in entries:
        args = shlex.split(e['command']) if 'command' in e else e['arguments']
        missing = [f for f in FLAGS if f not in args]
        if missing:
            fail('%s is compiled without %s' % (e['file'], ' '.join(missing)))
    ours = [e for e in entries if os.path.realpath(e['file']).startswith(top + os.sep)]
    if not ours:
        fail('no compile of a file under ' + top)
    with tempfile.TemporaryDirectory() as d:
        for name, text, want_error in (('planted.c', PLANTED, True), ('control.c', CONTROL, False)):
            path = os.path.join(d, name)
            with open(path, 'w') as f:
                f.write(text)
            args = compile_args(ours[0], path)
            try:
                r = subprocess.run(args, cwd=ours[0]['directory'], capture_output=True, text=True)
            except OSError as e:
                fail('cannot run %s: %s' % (args[0], e))
            if want_error and (r.returncode == 0 or 'declaration-after-statement' not in r.stderr):
                fail('%s accepts a declaration after a statement (rc %d): %s' %
                     (args[0], r.returncode, r.stderr.strip()[:300]))
            if not want_error and r.returncode != 0:
                fail('%s refuses the control, so the planted failure proves nothing: %s' %
                     (args[0], r.stderr.strip()[:300]))
    print('# style_declarations: %d compiles carry %s; a planted declaration after a statement '
          'fails, its control compiles' % (len(entries), ' '.join(FLAGS)))


main()
