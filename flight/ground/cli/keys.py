"""``flight ground keys``: the onboard key store by telecommand (service 141,
:mod:`flight.spacelink.pus141_keys`, in the manner of CCSDS 355.1-B-1's key management):

    flight ground keys upload STATION [--kek NAME]   TC[141,1]  the station's key file, wrapped
    flight ground keys verify SPI                     TC[141,4] -> TM[141,132], checked here
    flight ground keys activate SPI                   TC[141,2]
    flight ground keys deactivate SPI                 TC[141,3]  revoke
    flight ground keys list                           TC[141,7] -> TM[141,135]

Every one is signed like any TC (``--station``/``--key``/``--keys``) and prints the
verification stages; exit 0 only when it completed (and, for ``verify``, when the answer is
the one this ground's copy of the key gives).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from flight.ground.cli.common import EXIT_FAILED, EXIT_OK, FMT, load_dictionary, para, print_table, run_tc
from flight.spacelink import keys, pus141_keys as pus141
from flight.spacelink.sdls import MAX_SPI


def _spi(text: str) -> int:
    """argparse type: an SPI, 1..65535."""
    if not text.isdigit() or not 0 < int(text) <= MAX_SPI:
        raise argparse.ArgumentTypeError(f"an SPI is 1..{MAX_SPI}, got {text!r}")
    return int(text)


def add_parser(sub: Any, common: argparse.ArgumentParser, signing: argparse.ArgumentParser) -> None:
    """Register ``keys`` on ``flight ground``'s sub-command ``sub``; ``common`` and ``signing``
    are its shared option parents."""
    both = [common, signing]
    parser = sub.add_parser(
        "keys", formatter_class=FMT, help="the satellite's station keys: upload, verify, activate, revoke, list",
        description=para(
            "Manage the onboard key store, the station keys the satellite takes telecommands from, by "
            "telecommand (mission service 141, in the manner of the SDLS Extended Procedures, CCSDS "
            "355.1-B-1: OTAR, key verification, activation, deactivation, inventory). A key is uploaded "
            "wrapped under a key-encryption key (AES key wrap, RFC 5649) and enters the store "
            "pre-active; it authenticates TCs once activated; a deactivated (revoked) key never does "
            "again, and a TC still signed with it is refused with KEY_NOT_ACTIVE and counted. The "
            "store survives reboots. Rotate a key without a gap: create the new one (`flight keys "
            "init --station NEW`), upload it, verify it, activate it, then deactivate the old one "
            "signing with the new one (--station NEW). Each TC is signed with --station's key, which "
            "must be active on board."),
        epilog="examples (a rotation):\n  flight keys init --station local-2\n"
               "  flight ground keys upload local-2\n  flight ground keys verify 2\n"
               "  flight ground keys activate 2\n  flight ground keys deactivate 1 --station local-2\n"
               "  flight ground keys list --station local-2")
    actions = parser.add_subparsers(dest="keys_action", required=True, metavar="ACTION")
    upload = actions.add_parser(
        "upload", parents=both, formatter_class=FMT, help="upload a station's key, wrapped: TC[141,1]",
        description=para(
            "Upload the key of STATION (its key file in the key directory, with its SPI) wrapped under "
            "the key-encryption key --kek (from the same directory; `flight run` creates 'master' "
            "there, `flight keys init-kek` another). The satellite unwraps it with its copy of that "
            "KEK and stores it pre-active under its SPI, which must be new on board."),
        epilog="example:\n  flight keys init --station local-2 && flight ground keys upload local-2")
    upload.add_argument("upload_station", metavar="STATION", help="whose key file to upload")
    upload.add_argument("--kek", default=keys.LOCAL_KEK, metavar="NAME",
                        help=f"the key-encryption key to wrap it with (default {keys.LOCAL_KEK!r})")
    upload.set_defaults(func=cmd_upload)
    verify = actions.add_parser(
        "verify", parents=both, formatter_class=FMT, help="challenge the satellite's copy of a key: TC[141,4]",
        description=para(
            "Send a random 16-byte challenge for the key of SPI; the satellite answers with the MAC "
            "of it under its copy of the key (TM[141,132]), and this ground checks that answer against "
            "the key file of that SPI in the key directory: the same key on both sides, without "
            "sending it. Works for a pre-active key, so check before you activate. Exit 0 only when "
            "the answer matches."),
        epilog="example:\n  flight ground keys verify 2")
    verify.add_argument("spi", type=_spi, metavar="SPI")
    verify.set_defaults(func=cmd_verify)
    for name, subtype, what, detail in (
            ("activate", pus141.ACTIVATE, "activate a pre-active key: TC[141,2]",
             "From now on the satellite takes TCs signed with the key of SPI."),
            ("deactivate", pus141.DEACTIVATE, "deactivate (revoke) a key: TC[141,3]",
             "For good: a TC signed with the key of SPI is refused from now on (KEY_NOT_ACTIVE) and "
             "counted, and it can never be activated again. The last active key is never deactivated "
             "(VALIDATION_ERROR): activate its successor first.")):
        p = actions.add_parser(name, parents=both, formatter_class=FMT, help=what, description=para(detail),
                               epilog=f"example:\n  flight ground keys {name} 2")
        p.add_argument("spi", type=_spi, metavar="SPI")
        p.set_defaults(func=cmd_state, subtype=subtype)
    listing = actions.add_parser(
        "list", parents=both, formatter_class=FMT, help="the keys on board and their states: TC[141,7]",
        description="List the keys of the onboard key store (SPI, name, state) between --first and --last.",
        epilog="example:\n  flight ground keys list")
    listing.add_argument("--first", type=_spi, default=1, metavar="SPI", help="lowest SPI (default 1)")
    listing.add_argument("--last", type=_spi, default=MAX_SPI, metavar="SPI", help=f"highest SPI (default {MAX_SPI})")
    listing.set_defaults(func=cmd_list)


def _directory(args: argparse.Namespace) -> Path:
    return keys.keys_dir(args.keys)


def cmd_upload(args: argparse.Namespace) -> int:
    directory = _directory(args)
    try:
        key = keys.load_key(directory, args.upload_station)
        kek = keys.load_kek(directory, args.kek)
        data = pus141.otar_data(kek, key)
    except (OSError, ValueError) as exc:
        print(f"cannot upload the key of {args.upload_station!r} from {directory}: {exc}")
        return EXIT_FAILED
    print(f"uploading the key of {key.station!r} (SPI {key.spi}) wrapped under key-encryption key "
          f"{kek.name!r} ({kek.kek_id})")
    code, _ = run_tc(args, load_dictionary(), pus141.KEY_SERVICE, pus141.OTAR, data)
    return code


def cmd_state(args: argparse.Namespace) -> int:
    code, _ = run_tc(args, load_dictionary(), pus141.KEY_SERVICE, args.subtype, pus141.spi_data(args.spi))
    return code


def cmd_verify(args: argparse.Namespace) -> int:
    challenge = os.urandom(pus141.CHALLENGE_LEN)
    code, reports = run_tc(args, load_dictionary(), pus141.KEY_SERVICE, pus141.VERIFY,
                           pus141.verify_data(args.spi, challenge))
    replies = [r for r in reports if isinstance(r, pus141.KeyVerificationReport) and r.spi == args.spi]
    if code != EXIT_OK or not replies:
        return EXIT_FAILED
    try:
        ours = keys.load_all(_directory(args)).get(args.spi)
    except (OSError, ValueError) as exc:
        print(f"cannot read the key directory {_directory(args)}: {exc}")
        return EXIT_FAILED
    if ours is None:
        print(f"answer {replies[-1].response.hex()}: no key file of SPI {args.spi} in {_directory(args)} to check it")
        return EXIT_FAILED
    if replies[-1].response != pus141.verification_response(ours.key, args.spi, challenge):
        print(f"MISMATCH: the satellite's key of SPI {args.spi} is not the one in {keys.key_path(_directory(args), ours.station)}")
        return EXIT_FAILED
    print(f"verified: the satellite holds the key of SPI {args.spi} ({ours.station}) this ground holds")
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    code, reports = run_tc(args, load_dictionary(), pus141.KEY_SERVICE, pus141.INVENTORY,
                           pus141.inventory_data(args.first, args.last))
    entries = [e for r in reports if isinstance(r, pus141.KeyInventoryReport) for e in r.keys]
    if code == EXIT_OK:
        print_table("keys on board", ["SPI", "name", "state"],
                    [[str(e.spi), e.name, e.state.name] for e in entries])
    return code
