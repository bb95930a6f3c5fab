"""The email digest: edition, rendering, outbox and SMTP delivery."""
