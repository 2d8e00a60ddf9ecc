"""Outbound webhooks (our extension): endpoints per environment, events written as delivery jobs in
the transaction of the change that causes them, signed POSTs (Standard Webhooks), a log per attempt."""
