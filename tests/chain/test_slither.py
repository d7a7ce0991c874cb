"""``make lint``'s slither check (``scripts/check_slither.py``) on planted bugs: a reentrancy (the state written
after the call that sends the value) and an unchecked ERC-20 transfer, in a copy of a vault, fail it; the same vault
written correctly passes; a triage entry with its reason covers a finding, and one naming what is not found fails."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest
from script_module import load_script

ROOT = Path(__file__).resolve().parents[2]

VAULT = """// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

interface IERC20 {
    function transfer(address to, uint256 amount) external returns (bool);
    function transferFrom(address from, address to, uint256 amount) external returns (bool);
}

contract Vault {
    IERC20 public immutable token;
    mapping(address => uint256) public ether_;
    mapping(address => uint256) public tokens;

    constructor(IERC20 token_) { token = token_; }

    function depositEther() external payable { ether_[msg.sender] += msg.value; }

    function withdrawEther() external {
        uint256 amount = ether_[msg.sender];
        %(ether)s
    }

    function depositTokens(uint256 amount) external {
        require(token.transferFrom(msg.sender, address(this), amount), "transfer");
        tokens[msg.sender] += amount;
    }

    function withdrawTokens() external {
        uint256 amount = tokens[msg.sender];
        tokens[msg.sender] = 0;
        %(tokens)s
    }
}
"""
REENTRANT = ('(bool ok, ) = msg.sender.call{value: amount}(""); require(ok, "send"); ether_[msg.sender] = 0;')
SAFE_ETHER = 'ether_[msg.sender] = 0; (bool ok, ) = msg.sender.call{value: amount}(""); require(ok, "send");'
UNCHECKED = "token.transfer(msg.sender, amount);"
CHECKED = 'require(token.transfer(msg.sender, amount), "transfer");'


@pytest.fixture(scope="module")
def check() -> ModuleType:
    return load_script(ROOT / "scripts" / "check_slither.py", "check_slither")


def vault(tmp_path: Path, ether: str, tokens: str) -> Path:
    folder = tmp_path / "contracts"
    folder.mkdir()
    (folder / "Vault.sol").write_text(VAULT % {"ether": ether, "tokens": tokens})
    return folder


def test_a_planted_reentrancy_and_an_unchecked_transfer_fail_the_check(
        check: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = vault(tmp_path, REENTRANT, UNCHECKED)
    assert check.main(["--contracts", str(folder), "--triage", str(tmp_path / "none.toml")]) == 1
    out = capsys.readouterr().out
    assert "reentrancy-eth at Vault.withdrawEther" in out
    assert "unchecked-transfer at Vault.withdrawTokens" in out


def test_the_vault_written_correctly_passes_and_a_triage_needs_a_reason(
        check: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = vault(tmp_path, SAFE_ETHER, CHECKED)
    findings = check.analyse(folder)
    assert not [f for f in findings if f.check in ("reentrancy-eth", "unchecked-transfer")]
    open_, _ = check.check(findings, [])
    triage = tmp_path / "triage.toml"
    triage.write_text("".join(f'[[finding]]\ncheck = "{f.check}"\nwhere = "{f.where}"\nreason = "read: fine"\n'
                              for f in open_))
    assert check.main(["--contracts", str(folder), "--triage", str(triage)]) == 0
    triage.write_text(triage.read_text() + '[[finding]]\ncheck = "reentrancy-eth"\nwhere = "Vault.gone"\n'
                                           'reason = "was fixed"\n')
    assert check.main(["--contracts", str(folder), "--triage", str(triage)]) == 1
    assert "reentrancy-eth at Vault.gone, which slither no longer finds" in capsys.readouterr().out
    triage.write_text('[[finding]]\ncheck = "timestamp"\nwhere = "Vault.x"\nreason = ""\n')
    with pytest.raises(SystemExit, match="gives no reason"):
        check.load_triage(triage)
