CREATE TABLE "app_settings" (
	"key" text PRIMARY KEY NOT NULL,
	"value" jsonb NOT NULL,
	"updated_at" timestamp (3) with time zone DEFAULT now() NOT NULL
);
--> statement-breakpoint
CREATE TABLE "message_search" (
	"message_id" uuid PRIMARY KEY NOT NULL,
	"tenant_id" uuid NOT NULL,
	"tsv" "tsvector" NOT NULL,
	"embedding_status" text NOT NULL,
	"embedding_error" text,
	"lease_until" timestamp (3) with time zone,
	"attempts" integer DEFAULT 0 NOT NULL,
	"embedded_at" timestamp (3) with time zone,
	CONSTRAINT "ck_message_search_status" CHECK ("message_search"."embedding_status" IN ('pending', 'ready', 'failed', 'disabled'))
);
--> statement-breakpoint
ALTER TABLE "message_search" ADD CONSTRAINT "message_search_message_id_messages_id_fk" FOREIGN KEY ("message_id") REFERENCES "public"."messages"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "ix_message_search_tsv" ON "message_search" USING gin ("tsv");--> statement-breakpoint
CREATE INDEX "ix_message_search_pending" ON "message_search" USING btree ("message_id") WHERE "message_search"."embedding_status" = 'pending';--> statement-breakpoint
CREATE INDEX "ix_message_search_failed" ON "message_search" USING btree ("tenant_id") WHERE "message_search"."embedding_status" = 'failed';