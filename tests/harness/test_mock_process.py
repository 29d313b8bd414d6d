"""How the harness starts the mock as a process (`harness/target.py`)."""

from __future__ import annotations

from harness.target import _mock_argv
from mock_server.cli import build_parser


def test_an_admin_token_that_looks_like_a_flag_is_passed_as_a_token() -> None:
    # secrets.token_urlsafe() begins with "-" one time in 64; argparse would take it for a flag and the
    # mock would not start ("argument --admin-token: expected one argument").
    argv = _mock_argv(0, "-looks-like-a-flag", ["--tls-self-signed", "/tmp/ca"])
    args = build_parser().parse_args(argv[3:])  # after `python -m mock_server`
    assert (args.admin_token, args.tls_self_signed) == ("-looks-like-a-flag", "/tmp/ca")
