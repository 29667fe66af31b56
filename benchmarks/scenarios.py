"""The HTTP scenarios and the bare references: wrk drives the load, Python sets up and checks."""

import asyncio
import sys
import time
from dataclasses import dataclass
from typing import Any

from benchmarks import reference, wrk
from benchmarks.checks import Check, Databases, answers, equal, rows_match_answers, settle
from benchmarks.config import REFERENCE_OF, Config
from benchmarks.measure import Figures, Meter
from benchmarks.stats import Outcome
from benchmarks.system import Shop

JSON = {"Content-Type": "application/json"}
SERVICES = ("point", "product", "coupon", "order", "ranking")
WORKERS = ("ranking-worker", "order-relay", "dataplatform")
"""the shop's other processes (counted while the shop settles before idle, not in idle)"""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass
class Users:
    """Disjoint ranges of user ids, one per load (ids stay below 2**53: Lua numbers are doubles)."""

    next_base: int = 10**12
    span: int = 10**10

    def take(self) -> int:
        base = self.next_base
        self.next_base += self.span
        return base


class Bench:
    def __init__(self, config: Config, shop: Shop, meter: Meter, dbs: Databases) -> None:
        self.config = config
        self.shop = shop
        self.meter = meter
        self.dbs = dbs
        self.users = Users()
        self.references: dict[str, Outcome] = {}

    async def load(
        self,
        service: str,
        path: str,
        script: str,
        args: dict[str, str | int | float],
        *,
        seconds: float | None = None,
        post: bool = True,
    ) -> tuple[wrk.WrkResult, Figures]:
        """One measured wrk run against `service` (CPU and connections while it runs)."""
        c = self.config
        await self.meter.start()
        result = await wrk.run(
            wrk.Load(
                url=f"{self.shop.urls[service]}{path if '{' not in path else '/'}",
                script=script,
                seconds=seconds or c.duration_s,
                connections=c.connections,
                threads=c.threads,
                timeout_s=c.timeout_s,
                headers={**self.shop.admin, **(JSON if post else {})},
                args={"path": path, **args},
            )
        )
        figures = await self.meter.stop([("wrk", result.cpu_s)])
        return result, figures

    def outcome(self, name: str, kind: str, result: wrk.WrkResult, figures: Figures) -> Outcome:
        outcome = Outcome(
            name=name,
            kind=kind,
            rate=result.rate,
            p50_ms=result.ms("p50"),
            p99_ms=result.ms("p99"),
            wrk=result,
            figures=figures,
        )
        if kind == "scenario" and name in REFERENCE_OF:
            outcome.compare(self.references.get(REFERENCE_OF[name]))
        return outcome

    # -- the bare references ------------------------------------------------------------

    async def reference(self, route: str) -> Outcome:
        log(f"reference /{route}")
        users = self.users.take()
        if route == "gate":
            path = f"/gate/{reference.SOLD_OUT_COUPON}"
            result, figures = await self.load("reference", path, "post_user.lua", {"base": users})
            outcome = self.outcome("gate", "reference", result, figures)
            outcome.checks.append(answers(result, {"409 COUPON_SOLD_OUT"}))
            outcome.notes = "Redis admission script on a sold-out coupon → 409."
        elif route == "win":
            path = f"/win/{reference.WIN_COUPON}"
            before = await self.dbs.reference_issues(reference.WIN_COUPON)
            result, figures = await self.load("reference", path, "post_user.lua", {"base": users})
            outcome = self.outcome("win", "reference", result, figures)
            rows = await settle(lambda: self.dbs.reference_issues(reference.WIN_COUPON))
            outcome.checks += [
                answers(result, {"201"}),
                rows_match_answers(
                    "rows", rows - before, result.count("201"), self.config.connections
                ),
            ]
            outcome.notes = "Redis admission script, then one INSERT (asyncpg pool) → 201."
        else:
            result, figures = await self.load("reference", "/read/1", "get.lua", {}, post=False)
            outcome = self.outcome("read", "reference", result, figures)
            outcome.checks.append(answers(result, {"200"}))
            outcome.notes = "One primary-key SELECT (asyncpg pool) → 200."
        self.references[route] = outcome
        return outcome

    # -- coupons ------------------------------------------------------------------------

    async def coupon_soldout(self) -> Outcome:
        coupon = await self.shop.create_coupon(1)
        await self.shop.post("coupon", f"/coupons/{coupon}/issue", {"user_id": 1})
        result, figures = await self.load(
            "coupon", f"/coupons/{coupon}/issue", "post_user.lua", {"base": self.users.take()}
        )
        outcome = self.outcome("coupon-soldout", "scenario", result, figures)
        issued = (await self.shop.get("coupon", f"/coupons/{coupon}"))["issued_quantity"]
        rows, _, _ = await self.dbs.user_coupons(coupon)
        outcome.checks += [
            answers(result, {"409 COUPON_SOLD_OUT"}),
            equal("issued_quantity", issued, 1),
            equal("user_coupons rows", rows, 1),
        ]
        outcome.notes = f"Coupon {coupon} of 1, issued once before; every request a new user."
        return outcome

    async def coupon_winner(self) -> Outcome:
        total = self.config.winner_total
        coupon = await self.shop.create_coupon(total)
        result, figures = await self.load(
            "coupon", f"/coupons/{coupon}/issue", "post_user.lua", {"base": self.users.take()}
        )
        outcome = self.outcome("coupon-winner", "scenario", result, figures)
        rows = await settle(lambda: self._coupon_rows(coupon))
        rows, users, _ = await self.dbs.user_coupons(coupon)
        issued = (await self.shop.get("coupon", f"/coupons/{coupon}"))["issued_quantity"]
        outcome.checks += [
            answers(result, {"201"}),
            rows_match_answers(
                "issued vs 201 answers", issued, result.count("201"), self.config.connections
            ),
            equal("issued_quantity == user_coupons rows", issued, rows),
            equal("no user twice (rows == distinct users)", rows, users),
        ]
        outcome.notes = f"Coupon {coupon} of {total:,}; every request a new user (all winners)."
        return outcome

    async def coupon_rush(self) -> Outcome:
        c = self.config
        coupon = await self.shop.create_coupon(c.rush_quantity)
        result, figures = await self.load(
            "coupon",
            f"/coupons/{coupon}/issue",
            "post_user.lua",
            {"users": "random", "base": self.users.take(), "pool": c.rush_users},
            seconds=c.rush_s,
        )
        outcome = self.outcome("coupon-rush", "scenario", result, figures)
        await settle(lambda: self._coupon_rows(coupon))
        rows, users, span_s = await self.dbs.user_coupons(coupon)
        issued = (await self.shop.get("coupon", f"/coupons/{coupon}"))["issued_quantity"]
        outcome.checks += [
            answers(result, {"201", "409 COUPON_SOLD_OUT", "409 COUPON_ALREADY_ISSUED"}),
            equal("201 answers", result.count("201"), c.rush_quantity),
            equal("issued_quantity", issued, c.rush_quantity),
            equal("user_coupons rows", rows, c.rush_quantity),
            equal("no user twice (rows == distinct users)", rows, users),
        ]
        outcome.details["sold_out_in_s"] = round(span_s, 3)
        outcome.notes = (
            f"Coupon {coupon} of {c.rush_quantity:,}; users drawn at random from "
            f"{c.rush_users:,} (repeats happen). First to last issue: {span_s * 1000:.0f} ms."
        )
        return outcome

    async def _coupon_rows(self, coupon: int) -> int:
        return (await self.dbs.user_coupons(coupon))[0]

    # -- points -------------------------------------------------------------------------

    async def charge(self, hot: bool) -> Outcome:
        amount = self.config.charge_amount
        base = self.users.take()
        last = base if hot else base + self.users.span - 1
        result, figures = await self.load(
            "point",
            "/points/{user}/charge",
            "charge.lua",
            {"users": "fixed" if hot else "distinct", "base": base, "amount": amount},
        )
        name = "charge-hot" if hot else "charge-distinct"
        outcome = self.outcome(name, "scenario", result, figures)
        entries = await settle(lambda: self._ledger_rows(base, last))
        entries, charged = await self.dbs.ledger(base, last)
        accounts, balance = await self.dbs.balances(base, last)
        ok_answers = {"200", "409 BALANCE_LIMIT_EXCEEDED"} if hot else {"200"}
        outcome.checks += [
            answers(result, ok_answers),
            rows_match_answers(
                "ledger rows vs 200 answers", entries, result.count("200"), self.config.connections
            ),
            equal("Σ balances == amount × ledger rows", balance, amount * entries),
            equal("Σ ledger amounts == Σ balances", charged, balance),
        ]
        if hot:
            outcome.checks.append(equal("one balance row", accounts, 1))
        outcome.notes = (
            f"Charges of {amount} to {'one user' if hot else 'a new user each'}"
            f"{' (one row, every request contends for it)' if hot else ''}."
        )
        return outcome

    async def _ledger_rows(self, first: int, last: int) -> int:
        return (await self.dbs.ledger(first, last))[0]

    # -- reads --------------------------------------------------------------------------

    async def product_read(self) -> Outcome:
        product = await self.shop.create_product(1_000, 100)
        result, figures = await self.load(
            "product", f"/products/{product}", "get.lua", {}, post=False
        )
        outcome = self.outcome("product-read", "scenario", result, figures)
        outcome.checks.append(answers(result, {"200"}))
        outcome.notes = f"GET /products/{product}."
        return outcome

    async def top5_read(self) -> Outcome:
        top: dict[str, Any] = await self.shop.get("ranking", "/rankings/top-products")
        result, figures = await self.load(
            "ranking", "/rankings/top-products", "get.lua", {}, post=False
        )
        outcome = self.outcome("top5-read", "scenario", result, figures)
        outcome.checks.append(answers(result, {"200"}))
        outcome.notes = (
            f"GET /rankings/top-products ({len(top.get('items', []))} items in the snapshot)."
        )
        return outcome

    # -- idle ---------------------------------------------------------------------------

    async def _settle(self, window_s: float = 5.0, most_s: float = 120.0) -> float:
        """Waits until the shop's own processes (workers included) used less than a tenth of a
        core over `window_s`, at most `most_s`; the seconds it took."""
        started = asyncio.get_running_loop().time()
        while asyncio.get_running_loop().time() - started < most_s:
            await self.meter.start()
            await asyncio.sleep(window_s)
            figures = await self.meter.stop()
            busy = sum(figures.cpu_s.get(name, 0.0) for name in (*SERVICES, *WORKERS))
            if busy / figures.seconds < 0.1:
                break
        return asyncio.get_running_loop().time() - started

    async def idle(self) -> Outcome:
        c = self.config
        settled_in = await self._settle()
        await self.meter.start()
        await asyncio.sleep(c.idle_s)
        figures = await self.meter.stop()
        services = sum(figures.cpu_s.get(name, 0.0) for name in SERVICES)
        pct = services / figures.seconds * 100
        outcome = Outcome("idle", "scenario", None, None, None, figures=figures)
        outcome.checks.append(
            Check(
                "service CPU while idle",
                pct <= c.idle_budget_pct,
                f"{pct:.2f} % of one core over {figures.seconds:.0f} s "
                f"(budget {c.idle_budget_pct:g} %); per process: "
                + ", ".join(f"{n} {figures.cpu_s.get(n, 0.0):.2f} s" for n in SERVICES),
            )
        )
        outcome.details["idle_cpu_pct_of_one_core"] = round(pct, 3)
        outcome.notes = (
            f"Nothing running for {c.idle_s:g} s; services: {', '.join(SERVICES)}; measured once "
            f"the shop had settled ({settled_in:.0f} s: e.g. the ranking worker restoring its "
            "tables from their changelogs after the tracing scenario's restarts)."
        )
        log(f"idle: services used {pct:.2f} % of one core")
        return outcome
