-- A result that books a receipt on a payout or refund first looks for a request on which a
-- person recorded that receipt by hand (and a settlement by hand looks for it everywhere):
-- without an index each of them reads every initiator request.

CREATE INDEX ix_initiator_requests_receipt ON initiator_requests (receipt);
