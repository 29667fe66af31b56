"""`python -m coupon.reconcile [--coupon ID ...] [--grace-s S]` (`make reconcile-gates`): compares
the open coupons' Redis gates (or the given ones) with PostgreSQL now and takes back admissions no
issued copy backs (see coupon.service.reconciling)."""

import argparse
import asyncio
import sys

from coupon.adapters.gate import IssuanceGate
from coupon.config import Settings
from coupon.service.reconciling import open_coupons, reconcile
from shopkit.database.engine import create_engine, session_factory
from shopkit.database.uow import UnitOfWork


async def run(argv: list[str], settings: Settings) -> dict[int, list[int]]:
    parser = argparse.ArgumentParser(prog="python -m coupon.reconcile", description=__doc__)
    parser.add_argument("--coupon", type=int, action="append", help="only this coupon (repeatable)")
    parser.add_argument(
        "--grace-s",
        type=float,
        default=settings.gate_reconcile_grace_s,
        help="how long an unbacked admission must stay unbacked (issuances in flight)",
    )
    args = parser.parse_args(argv)
    engine = create_engine(settings)
    gate = IssuanceGate.connect(settings)
    try:
        sessions = session_factory(engine)

        def units() -> UnitOfWork:
            return UnitOfWork(sessions, settings.service_name, engine)

        coupon_ids = args.coupon or await open_coupons(units)
        return await reconcile(units, gate, coupon_ids, args.grace_s)
    finally:
        await gate.close()
        await engine.dispose()


def main() -> None:
    repaired = asyncio.run(run(sys.argv[1:], Settings()))
    for coupon_id, users in repaired.items():
        sys.stdout.write(f"coupon {coupon_id}: took back {len(users)} admission(s): {users}\n")
    sys.stdout.write(f"{sum(map(len, repaired.values()))} admission(s) repaired\n")


if __name__ == "__main__":
    main()
