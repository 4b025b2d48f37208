"""Start Autobahn|Testsuite's ``wstest`` from a ``pip --target`` folder.

This file runs under **Python 2.7** (wstest does not run on Python 3); it is
written in syntax that Python 3 can parse too, so linters do not choke on it.
install.sh copies it to ``.cache/autobahn/wstest_py27.py`` and writes the
``.cache/autobahn/bin/wstest`` wrapper that calls it.

Usage::

    python2.7 -s wstest_py27.py SITE_DIR [wstest options ...]
    python2.7 -s wstest_py27.py SITE_DIR --list-cases SPEC.json OUT.json

What it adds on top of plain ``wstest``:

* SITE_DIR goes first on ``sys.path`` and its ``*.pth`` files are processed
  (zope.interface is a namespace package that only imports via its .pth file,
  and .pth files on PYTHONPATH are otherwise ignored).
* Every listening socket that wstest opens without naming an interface (its
  fuzzingserver listens on all interfaces) is bound to ``$WSTEST_BIND``
  instead, default ``127.0.0.1``.
* ``--list-cases`` writes the case IDs a spec selects, in run order, as JSON
  ``{"cases": [...], "unknown": [...]}``; nothing is run.
"""

import json
import os
import site
import sys


def _use_site(target):
    sys.path.insert(0, target)
    site.addsitedir(target)


def _bind_to_loopback(reactor, bind):
    listen_tcp = reactor.listenTCP
    listen_ssl = reactor.listenSSL

    def tcp(port, factory, backlog=50, interface=""):
        return listen_tcp(port, factory, backlog, interface or bind)

    def ssl(port, factory, context_factory, backlog=50, interface=""):
        return listen_ssl(port, factory, context_factory, backlog, interface or bind)

    reactor.listenTCP = tcp
    reactor.listenSSL = ssl


def _list_cases(spec_path, out_path):
    from autobahntestsuite.case import (
        CaseBasename,
        CaseCategories,
        Cases,
        CaseSetname,
        CaseSubCategories,
    )
    from autobahntestsuite.caseset import CaseSet

    with open(spec_path) as f:
        spec = json.load(f)
    case_set = CaseSet(CaseSetname, CaseBasename, Cases, CaseCategories, CaseSubCategories)
    cases = case_set.parseSpecCases(spec)
    unknown = [c for c in cases if c not in case_set.CasesById]
    with open(out_path, "w") as f:
        json.dump({"cases": cases, "unknown": unknown}, f)
    return 0


def main():
    if len(sys.argv) < 2:
        sys.stderr.write("usage: wstest_py27.py SITE_DIR [wstest args]\n")
        return 2
    target = os.path.abspath(sys.argv.pop(1))
    _use_site(target)
    if len(sys.argv) >= 2 and sys.argv[1] == "--list-cases":
        if len(sys.argv) != 4:
            sys.stderr.write("usage: wstest --list-cases SPEC.json OUT.json\n")
            return 2
        return _list_cases(sys.argv[2], sys.argv[3])

    sys.argv[0] = "wstest"
    # Importing wstest installs the Twisted reactor (epoll on Linux).
    from autobahntestsuite import wstest
    from twisted.internet import reactor

    _bind_to_loopback(reactor, os.environ.get("WSTEST_BIND", "127.0.0.1"))
    wstest.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
