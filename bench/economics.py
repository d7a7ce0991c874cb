"""make bench, economics of the attested tier: is cheating or griefing ever profitable?

A node sells attested calls at price P. An honest call costs it C_h (compute); a cheating call (a smaller or
quantised model) costs C_c < C_h. Staked validators re-check a share s of the results (the draw comes from
chain randomness the node cannot predict when it answers); a re-check detects a cheat with probability d
(measured: 1.0 over every cheat in bench/attested.md; 0.99 here for margin). A detected cheat is challenged;
k validators drawn from the pool vote; when the majority is honest the node loses: the consumer is refunded
(no P) and the node's stake is slashed by S. A challenger who challenges an honest result loses its bond B
when the (honest) majority votes for the node. Trust assumption: an honest majority of the k drawn.

Closed form, per call:
    honest node:   P - C_h
    cheating node: (1 - s d q) (P - C_c) - s d q (S + C_c)      q = P[honest majority of k drawn]
    griefer:       -(1 - w) B + w R                               w = P[dishonest majority], R = its reward
The seeded simulation (--calls per cheat rate) plays the same rules call by call and must agree.
Writes OUT/economics.json and OUT/economics.md.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from dataclasses import asdict, dataclass
from math import comb
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Terms:
    price: float = 1.0  # P, in units of the call price
    honest_cost: float = 0.6  # C_h
    cheat_cost: float = 0.06  # C_c: a model 10x cheaper
    sample_rate: float = 0.10  # s
    detection: float = 0.99  # d
    slash: float = 10.0  # S, in prices
    bond: float = 2.0  # B, a challenger's bond
    reward: float = 2.0  # R, what a winning challenger gets (from the slash)
    quorum: int = 5  # k validators drawn per challenge
    dishonest_share: float = 0.2  # share of the validator pool that votes against the truth


def majority(k: int, p: float) -> float:
    """P[more than k/2 of k independent draws are of a kind with probability p]."""
    return sum(comb(k, i) * p**i * (1 - p) ** (k - i) for i in range(k // 2 + 1, k + 1))


def expected(t: Terms) -> dict[str, float]:
    q = majority(t.quorum, 1 - t.dishonest_share)  # honest majority
    caught = t.sample_rate * t.detection * q
    cheat = (1 - caught) * (t.price - t.cheat_cost) - caught * (t.slash + t.cheat_cost)
    w = 1 - q
    return {"honest": t.price - t.honest_cost, "cheat": cheat, "caught": caught,
            "griefer": -(1 - w) * t.bond + w * t.reward, "honest_majority": q,
            "min_slash": (1 - caught) * (t.price - t.cheat_cost) / caught - t.cheat_cost if caught else float("inf")}


def simulate(t: Terms, cheat_rate: float, calls: int, seed: int, grief_rate: float = 0.05) -> dict[str, float]:
    """Call by call: the node cheats with probability ``cheat_rate``; a griefer challenges honest results with
    probability ``grief_rate``. Returns the node's and the griefer's profit per call."""
    rng = random.Random(seed)
    node = griefer = 0.0
    slashed = refunded = challenges = lost_challenges = 0
    for _ in range(calls):
        cheats = rng.random() < cheat_rate
        if cheats:
            challenged = rng.random() < t.sample_rate and rng.random() < t.detection
        else:
            challenged = rng.random() < grief_rate
        votes_truth = sum(rng.random() >= t.dishonest_share for _ in range(t.quorum)) if challenged else 0
        truth_wins = votes_truth > t.quorum // 2
        cost = t.cheat_cost if cheats else t.honest_cost
        if not challenged:
            node += t.price - cost
            continue
        challenges += 1
        node_loses = truth_wins if cheats else not truth_wins
        if node_loses:
            node -= t.slash + cost
            slashed += 1
            refunded += 1
            if not cheats:
                griefer += t.reward
        else:
            node += t.price - cost
            if not cheats:
                griefer -= t.bond
                lost_challenges += 1
    return {"cheat_rate": cheat_rate, "node_per_call": node / calls, "griefer_per_call": griefer / calls,
            "slashed": slashed, "refunded": refunded, "challenges": challenges, "griefs_lost": lost_challenges}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    parser.add_argument("--calls", type=int, default=20_000)
    parser.add_argument("--seed", type=int, default=8004)
    args = parser.parse_args()
    base = Terms()
    scenarios = {"base": base, "sample 5 %": Terms(sample_rate=0.05, slash=20.0),
                 "40 % dishonest validators": Terms(dishonest_share=0.4)}
    rows = []
    for name, terms in scenarios.items():
        closed = expected(terms)
        sims = [simulate(terms, rate, args.calls, args.seed + i) for i, rate in enumerate((0.0, 0.1, 0.5, 1.0))]
        rows.append({"scenario": name, "terms": asdict(terms), "expected": closed, "simulated": sims})
    sys.path.insert(0, str(Path(__file__).parent))
    import court_game  # the court's own rules, played on anvil

    court = court_game.play_all()
    doc = {"calls": args.calls, "seed": args.seed, "rows": rows, "court": court}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "economics.json").write_text(json.dumps(doc, indent=2))
    table = render(doc) + "\n".join(court_game.render(court))
    (args.out / "economics.md").write_text(table)
    print(table)
    return 0


def render(doc: dict[str, Any]) -> str:
    lines = ["# Attested tier: economics (cheating and griefing)", "",
             f"`make bench` (bench/economics.py), seeded simulation of {doc['calls']:,} calls per cheat rate (seed "
             f"{doc['seed']}), amounts in units of the call price. This part models a vote as k draws from a pool with "
             "a dishonest share; the court weighs votes by stake (next section, played on chain), so read the "
             "dishonest share as a share of the voting stake.", "",
             "| scenario | sample | slash | quorum / dishonest | honest node / call | cheating node / call (closed "
             "form) | cheat 10 % / 50 % / 100 % (simulated) | griefer / challenge | slash needed |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in doc["rows"]:
        t, e, sims = row["terms"], row["expected"], row["simulated"]
        simulated = " / ".join(f"{s['node_per_call']:+.3f}" for s in sims[1:])
        lines.append(
            f"| {row['scenario']} | {t['sample_rate']:.0%} | {t['slash']:g} P | {t['quorum']} / "
            f"{t['dishonest_share']:.0%} | {e['honest']:+.3f} | {e['cheat']:+.3f} "
            f"{'(loses)' if e['cheat'] < 0 else '(PROFITS)'} | {simulated} | {e['griefer']:+.3f} "
            f"{'(loses)' if e['griefer'] < 0 else '(PROFITS)'} | {e['min_slash']:.1f} P |")
    weak = doc["rows"][-1]
    lines += ["", "Reading: the closed-form column is a node that cheats on every call; the simulated columns mix "
              "honest and cheating calls (and 5 % griefing challenges of honest calls), so they fall from the honest "
              "profit towards the cheating one as the cheat rate grows. 'slash needed' is the smallest slash (in "
              "prices) that makes cheating lose money at that sample rate: S > (1 - s d q)(P - C_c) / (s d q) - C_c, "
              f"q the chance of an honest majority. With {weak['terms']['dishonest_share']:.0%} dishonest validators "
              f"a quorum of {weak['terms']['quorum']} has an honest majority only "
              f"{weak['expected']['honest_majority']:.0%} of the time: a {weak['terms']['slash']:g} P slash no longer "
              f"deters cheating ({weak['expected']['min_slash']:.1f} P would): the honest-majority assumption, the "
              "quorum and the validators' stake carry the tier's security.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
