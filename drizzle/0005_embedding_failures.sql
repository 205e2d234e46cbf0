-- Failed attempts charged to a message (EMBEDDING_MAX_ATTEMPTS), apart from `attempts`, which
-- counts claims, including those of outages and shutdowns that are no fault of the message. A
-- constant default adds the column without rewriting the table.
ALTER TABLE "message_search" ADD COLUMN "failures" integer DEFAULT 0 NOT NULL;
