"""Seeds the demo data once (skipped when products exist) and prints how to use the shop."""

import os
import sys
import warnings

import httpx

from shopkit.http.auth import mint

GATEWAY = os.environ.get("GATEWAY_URL", "http://localhost:8000")
POINT = f"http://127.0.0.1:{os.environ.get('POINT_HTTP_PORT', '8001')}"
PRODUCT = f"http://127.0.0.1:{os.environ.get('PRODUCT_HTTP_PORT', '8002')}"
COUPON = f"http://127.0.0.1:{os.environ.get('COUPON_HTTP_PORT', '8003')}"
ORDER = f"http://127.0.0.1:{os.environ.get('ORDER_HTTP_PORT', '8004')}"
SECRET = os.environ.get("JWT_SECRET", "local-dev-secret")
TRACES = (
    f"{os.environ['SHOP_TRACES_UI']}  (1 request in 100, and each sent with a sampled traceparent"
    f" header: README 'Follow an order'; its X-Trace-Id T: {os.environ['SHOP_TRACES_UI']}traces/T)"
    if os.environ.get("SHOP_TRACES_UI")
    else "off (ZIPKIN_ENABLED=false)"
)
DEMO_USER = 1
TOKEN_TTL_S = 12 * 3600

PRODUCTS = [
    ("아메리카노 원두 1kg", 24_000, 100),
    ("제주 감귤 5kg", 32_000, 50),
    ("한우 등심 500g", 89_000, 20),
    ("무선 이어폰", 129_000, 30),
    ("한정판 운동화", 219_000, 10),
    ("텀블러", 18_000, 200),
]


def main() -> int:
    warnings.filterwarnings("ignore", message="The HMAC key")  # API.md fixes the local secret
    admin_token = mint(SECRET, "0", "admin", ttl_s=TOKEN_TTL_S)
    user_token = mint(SECRET, str(DEMO_USER), "user", ttl_s=TOKEN_TTL_S)
    admin = {"Authorization": f"Bearer {admin_token}"}
    with httpx.Client(timeout=10) as http:
        if http.get(f"{PRODUCT}/products").json()["items"]:
            print("[seed] demo data already there")
        else:
            for name, price, stock in PRODUCTS:
                http.post(
                    f"{PRODUCT}/products",
                    json={"name": name, "price": price, "stock": stock},
                    headers=admin,
                ).raise_for_status()
            coupon = http.post(
                f"{COUPON}/coupons",
                json={
                    "name": "오픈 기념 10% 할인",
                    "discount_type": "PERCENT",
                    "discount_value": 10,
                    "total_quantity": 1000,
                    "valid_days": 30,
                    "min_order_amount": 20000,
                },
                headers=admin,
            )
            coupon.raise_for_status()
            http.post(
                f"{POINT}/points/{DEMO_USER}/charge",
                json={"amount": 1_000_000},
                headers={"Authorization": f"Bearer {user_token}"},
            ).raise_for_status()
            print(
                f"[seed] 6 products, coupon {coupon.json()['id']} (10% off from 20,000 won), user {DEMO_USER} charged 1,000,000 won"
            )
    print(f"""
The shop is running.
  gateway        {GATEWAY}  (every API path; start here)
  point          {POINT}/docs        product  {PRODUCT}/docs
  coupon         {COUPON}/docs        order    {ORDER}/docs
  ranking        http://127.0.0.1:8005/docs   order relay metrics  http://127.0.0.1:8006/metrics
  data platform  http://127.0.0.1:8090/orders  (the local stand-in: what the relay delivered)
  metrics        <service>/metrics   health   <service>/healthz, <service>/readyz
  logs           .local/logs/
  traces         {TRACES}

Every user endpoint needs a token of that user (or an admin's): `Authorization: Bearer <token>`.
Tokens for 12 h (more: make token ROLE=user SUB=42, make token ROLE=admin):
  demo user {DEMO_USER}  {user_token}
  admin        {admin_token}
JWT secret:  {SECRET if SECRET == "local-dev-secret" else "(from JWT_SECRET)"}
Try the README's walk-through; `make stop` stops everything.
""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
