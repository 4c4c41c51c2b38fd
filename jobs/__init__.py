"""The work of sms-outbox: outbox store, claim/send/record cycle, Flowroute client and policy."""
