-- Every new message gets its search row in the same statement, whatever the insert path. The
-- function is redefined at start-up with the configured SEARCH_LANGUAGE and the initial embedding
-- status ('pending' when embeddings are configured); these are the defaults until then.
CREATE OR REPLACE FUNCTION threadstore_index_messages() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO message_search (message_id, tenant_id, tsv, embedding_status)
  SELECT n.id, n.tenant_id, to_tsvector('simple'::regconfig, n.content), 'disabled'
  FROM inserted n;
  RETURN NULL;
END $$;
--> statement-breakpoint
CREATE TRIGGER trg_messages_index AFTER INSERT ON messages
  REFERENCING NEW TABLE AS inserted
  FOR EACH STATEMENT EXECUTE FUNCTION threadstore_index_messages();
--> statement-breakpoint
INSERT INTO message_search (message_id, tenant_id, tsv, embedding_status)
SELECT id, tenant_id, to_tsvector('simple'::regconfig, content), 'disabled' FROM messages
ON CONFLICT DO NOTHING;
--> statement-breakpoint
-- pgvector where the server has it. A failure (no privilege) must not abort the migration:
-- semantic search is then reported unavailable and full-text search still works.
DO $$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector') THEN
    BEGIN
      CREATE EXTENSION IF NOT EXISTS vector;
    EXCEPTION WHEN OTHERS THEN
      RAISE NOTICE 'pgvector not enabled: %', SQLERRM;
    END;
  END IF;
END $$;
