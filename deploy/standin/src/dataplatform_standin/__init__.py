"""A stand-in for the external data platform (`make run`, tests): it checks the signature,
records each paid order once per Idempotency-Key, and can be told to fail or to be slow."""

from dataplatform_standin.app import create_app, sign

__all__ = ["create_app", "sign"]
