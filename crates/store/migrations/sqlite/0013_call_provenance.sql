-- Where a call record comes from (ami | ami_cdr | cdr) and the gaps in the event stream it
-- spans: JSON {"ended_in_gap": {"from", "to"}, "answered_in_gap": ...}, NULL when pbxlink saw
-- the whole call. Records journaled before this column existed were all tracked from AMI.
ALTER TABLE calls ADD COLUMN source TEXT NOT NULL DEFAULT 'ami';
ALTER TABLE calls ADD COLUMN gaps TEXT;
