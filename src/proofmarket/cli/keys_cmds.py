"""``proofmarket keys``: the encrypted keystores the signing roles use off the devnet (``proofmarket.chain.keystore``).

    proofmarket keys new --role node [--out FILE]                 a random key, encrypted; prints its address
    proofmarket keys import --role owner --from-env VAR           a key from a variable (or --key-file FILE)
    proofmarket keys import --role node --key-file HOME/node.key --move   the node's plain key file into its keystore
    proofmarket keys list                                         each role's keystore and what it would sign with

A key is never an argument (it would land in the shell's history) and never printed. The password comes from
PROOFMARKET_KEYSTORE_PASSWORD_FILE, else it is asked on the terminal (twice for a new keystore). Files are written
0600 in a 0700 folder, by default where the settings read them (HOME/keys/<role>.json or
PROOFMARKET_<ROLE>_KEYSTORE), and never overwritten.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from proofmarket.cli.common import Run, command
from proofmarket.cli.groups import group
from proofmarket.core.errors import ProofMarketError, UsageError
from proofmarket.core.key_roles import ENV_KEY, ROLES, SCRYPT_N

if TYPE_CHECKING:  # the crypto loads when a keys command runs, not for --help
    from eth_account.signers.local import LocalAccount

    from proofmarket.chain.keystore import KeySource
    from proofmarket.core.profiles import ChainProfile
    from proofmarket.core.settings import Settings, X402Settings

keys_app = group(help="Encrypted keystores of the signing roles (owner, node, validator).",
                       no_args_is_help=True)
RoleOpt = Annotated[str, typer.Option("--role", help=f"the role the key signs for: {' | '.join(ROLES)}")]
OutOpt = Annotated[Path | None, typer.Option(
    "--out", help="the keystore file to write (default: where the settings read the role's keystore)")]
CostOpt = Annotated[int, typer.Option("--scrypt-n", help="scrypt cost (a power of two; more is slower to unlock "
                                                         "and to guess)")]


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")


@command(keys_app, "new")
def keys_new(run: Run, role: RoleOpt, out_file: OutOpt = None, scrypt_n: CostOpt = SCRYPT_N) -> None:
    """Make a random key for ROLE, encrypt it into a keystore and print its address (never the key)."""
    from eth_account import Account

    account: LocalAccount = Account.create()
    _write(run, role, account, out_file, scrypt_n, "made")


@command(keys_app, "import")
def keys_import(
    run: Run,
    role: RoleOpt,
    from_env: Annotated[str | None, typer.Option(
        "--from-env", help="the environment variable holding the key (e.g. PROOFMARKET_NODE_KEY)")] = None,
    key_file: Annotated[Path | None, typer.Option("--key-file", help="a file holding the key as hex")] = None,
    move: Annotated[bool, typer.Option("--move", help="with --key-file: delete the plain file once the keystore is "
                                                      "written (e.g. the node's HOME/node.key)")] = False,
    out_file: OutOpt = None,
    scrypt_n: CostOpt = SCRYPT_N,
) -> None:
    """Encrypt an existing key for ROLE into a keystore; the key comes from a variable or a file, never from the
    command line."""
    if (from_env is None) == (key_file is None):
        raise UsageError("give the key with exactly one of --from-env VAR or --key-file FILE (never as an argument)")
    if from_env is not None:
        from proofmarket.core.settings import env_value

        secret, name = env_value(from_env), from_env
        if secret is None:
            raise UsageError(f"{from_env} is unset or empty")
    else:
        assert key_file is not None
        name = str(key_file)
        try:
            secret = key_file.read_text()
        except (OSError, UnicodeDecodeError):
            raise UsageError(f"the key file {key_file} cannot be read") from None
    if move and key_file is None:
        raise UsageError("--move takes the key from --key-file (a variable is unset by you)")
    from proofmarket.chain.keystore import account_of

    _write(run, role, account_of(secret, name), out_file, scrypt_n, "imported",
           f"unset {from_env}" if from_env else (None if move else f"delete {key_file}"),
           remove=key_file if move else None)


@command(keys_app, "list")
def keys_list(run: Run) -> None:
    """Each role's keystore (file and address) and what the current settings would sign with."""
    from proofmarket.core.settings import X402Settings

    settings, extra = run.settings, X402Settings()
    profile = _known_profile(settings)
    rows = [_row(role, settings, extra, profile) for role in ROLES]
    run.done({"chain": profile.name if profile else None, "keys": rows},
             *(f"{r['role']:<10} {r['address'] or '-':<42}  {r['signs_with']}" for r in rows))


def _write(run: Run, role: str, account: LocalAccount, out_file: Path | None, cost: int, verb: str,
           then: str | None = None, remove: Path | None = None) -> None:
    from proofmarket.chain.devkeys import ANVIL_DEV_KEYS
    from proofmarket.chain.keystore import keystore_path, read_password, write_keystore

    settings = run.settings
    default, variable = keystore_path(role, settings)
    path = out_file or default
    password = read_password(settings, f"password for the new {role} keystore: ", confirm=True)
    address = write_keystore(path, account.key, password, iterations=cost)
    if remove is not None:
        remove.unlink()  # the keystore holds the key now: no plain copy stays behind
    public = account.key.hex().removeprefix("0x").lower() in {k.removeprefix("0x") for k in ANVIL_DEV_KEYS}
    read_here = path.resolve() == default.resolve()
    run.done({"role": role, "address": address, "file": str(path), "read_by_settings": read_here,
              "public_dev_key": public},
             f"{verb} the {role} key {address} in {path} (scrypt, 0600)",
             *([] if read_here else [f"  the settings read {default}: set {variable or _variable(role)}={path}"]),
             *([f"  now {then}: the keystore holds the key"] if then else []),
             *(["  [yellow]note[/]: a public anvil dev key: refused off the devnet"] if public else []))


def _row(role: str, settings: Settings, extra: X402Settings, profile: ChainProfile | None) -> dict[str, Any]:
    from proofmarket.chain.keystore import key_source, keystore_path

    path, variable = keystore_path(role, settings, extra)
    row: dict[str, Any] = {"role": role, "keystore": str(path), "keystore_exists": path.exists(),
                           "keystore_variable": variable, "env_variable": ENV_KEY[role], "source": None,
                           "source_role": None, "address": None, "refused": None}
    try:
        source: KeySource | None = key_source(role, settings, extra)
    except ProofMarketError as exc:
        row.update(source="error", signs_with=exc.message)
        return row
    assert source is not None
    row.update(source=source.kind, source_role=source.role, address=source.address, signs_with=source.describe())
    dev = profile is not None and profile.dev_keys_allowed
    chain = profile.name if profile is not None else "the RPC's chain"
    if role == "owner" and dev:
        unused = "" if source.kind == "none" else f" ({source.describe()} unused there)"
        row.update(signs_with=f"anvil dev accounts by role on {chain}{unused}")
    elif source.kind == "env" and profile is not None and not dev:
        row.update(refused=f"a plain key is refused on {profile.name}",
                   signs_with=f"{source.describe()}: refused on {profile.name}")
    elif source.kind == "none" and dev:
        row.update(signs_with="anvil dev accounts (devnet)" if role != "validator" else
                   "no key (on the devnet: --dev-account N)")
    if source.role != role and source.kind != "none":
        row.update(signs_with=f"the owner's key: {row['signs_with']}")
    return row


def _known_profile(settings: Settings) -> ChainProfile | None:
    """The chain profile the settings name without asking an RPC (None: only PROOFMARKET_RPC_URL's chain knows)."""
    try:
        return settings.profile()
    except UsageError:
        return None


def _variable(role: str) -> str:
    return f"PROOFMARKET_{role.upper()}_KEYSTORE"
