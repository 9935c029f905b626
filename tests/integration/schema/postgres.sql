column api_keys.admin boolean not null default false
column api_keys.created_at double precision not null
column api_keys.id text not null
column api_keys.max_unfinished integer
column api_keys.name text not null
column api_keys.owner text not null
column api_keys.revoked_at double precision
column api_keys.rpm integer
column api_keys.secret_hash text not null
column api_keys.webhook_url text
column key_rates.key_id text not null
column key_rates.tat double precision not null
column meta.name text not null
column meta.value bytea not null
column request_text.request_id text not null
column request_text.run integer not null
column request_text.start integer not null
column request_text.text text not null
column requests.cancel_requested_at double precision
column requests.completed_at double precision
column requests.created_at double precision not null
column requests.deliveries integer not null default 0
column requests.error_message text
column requests.failed_at double precision
column requests.id text not null
column requests.idempotency_key text
column requests.lease_expires_at double precision
column requests.lease_owner text
column requests.metadata text
column requests.model text not null
column requests.owner text not null
column requests.priority integer not null default 0
column requests.request text not null
column requests.request_hash text not null
column requests.response text
column requests.runs integer not null default 0
column requests.seq bigint not null identity
column requests.started_at double precision
column requests.status text not null
column requests.stream boolean not null default false
column requests.vtime bigint not null default 0
column requests.webhook_url text
column schema_migrations.applied_at double precision not null
column schema_migrations.name text not null
column schema_migrations.version integer not null
column usage.completion_tokens bigint not null
column usage.cost double precision not null
column usage.day text not null
column usage.model text not null
column usage.owner text not null
column usage.prompt_tokens bigint not null
column usage.requests bigint not null
column usage.total_tokens bigint not null
column webhook_attempts.at double precision not null
column webhook_attempts.attempt integer not null
column webhook_attempts.error text
column webhook_attempts.request_id text not null
column webhook_attempts.status_code integer
column webhook_deliveries.attempts integer not null default 0
column webhook_deliveries.created_at double precision not null
column webhook_deliveries.delivered_at double precision
column webhook_deliveries.event_type text not null
column webhook_deliveries.id text not null
column webhook_deliveries.last_error text
column webhook_deliveries.lease_owner text
column webhook_deliveries.next_attempt_at double precision
column webhook_deliveries.owner text not null
column webhook_deliveries.request_id text not null
column webhook_deliveries.status text not null
column webhook_deliveries.url text not null
column webhook_deliveries.window_start double precision not null
column webhook_disabled.disabled_at double precision not null
column webhook_disabled.owner text not null
column webhook_disabled.url text not null
column webhook_secrets.owner text not null
column webhook_secrets.previous text
column webhook_secrets.rotated_at double precision
column webhook_secrets.secret text not null
constraint api_keys CHECK ((max_unfinished >= 0))
constraint api_keys CHECK ((rpm >= 0))
constraint api_keys PRIMARY KEY (id)
constraint api_keys UNIQUE (secret_hash)
constraint key_rates PRIMARY KEY (key_id)
constraint meta PRIMARY KEY (name)
constraint request_text PRIMARY KEY (request_id, run, start)
constraint requests CHECK ((status = ANY (ARRAY['CREATED'::text, 'IN_PROGRESS'::text, 'COMPLETED'::text, 'FAILED'::text])))
constraint requests PRIMARY KEY (seq)
constraint requests UNIQUE (id)
constraint schema_migrations PRIMARY KEY (version)
constraint usage PRIMARY KEY (owner, day, model)
constraint webhook_attempts PRIMARY KEY (request_id, attempt)
constraint webhook_deliveries CHECK ((status = ANY (ARRAY['PENDING'::text, 'DELIVERED'::text, 'FAILED'::text])))
constraint webhook_deliveries PRIMARY KEY (id)
constraint webhook_deliveries UNIQUE (request_id)
constraint webhook_disabled PRIMARY KEY (owner, url)
constraint webhook_secrets PRIMARY KEY (owner)
function chatq_notify_cancel
function chatq_notify_status
function chatq_notify_text
function chatq_notify_webhook
function chatq_notify_webhooks_added
function chatq_notify_work
index CREATE INDEX requests_cancel_requested ON public.requests USING btree (lease_owner) WHERE ((status = 'IN_PROGRESS'::text) AND (cancel_requested_at IS NOT NULL))
index CREATE INDEX requests_finished ON public.requests USING btree (COALESCE(completed_at, failed_at)) WHERE (status = ANY (ARRAY['COMPLETED'::text, 'FAILED'::text]))
index CREATE INDEX requests_leased ON public.requests USING btree (lease_expires_at) WHERE (status = 'IN_PROGRESS'::text)
index CREATE INDEX requests_owner_lane ON public.requests USING btree (owner, vtime) WHERE ((status = 'CREATED'::text) AND (created_at > (0)::double precision))
index CREATE INDEX requests_owner_next ON public.requests USING btree (owner, priority DESC, seq) WHERE ((status = 'CREATED'::text) AND (seq > 0))
index CREATE INDEX requests_owner_status_seq ON public.requests USING btree (owner, status, seq)
index CREATE INDEX requests_waiting ON public.requests USING btree (vtime, seq) WHERE ((status = 'CREATED'::text) AND (vtime >= 0))
index CREATE INDEX webhook_deliveries_created ON public.webhook_deliveries USING btree (created_at)
index CREATE INDEX webhook_deliveries_due ON public.webhook_deliveries USING btree (owner, next_attempt_at, id) WHERE (status = 'PENDING'::text)
index CREATE UNIQUE INDEX api_keys_pkey ON public.api_keys USING btree (id)
index CREATE UNIQUE INDEX api_keys_secret_hash_key ON public.api_keys USING btree (secret_hash)
index CREATE UNIQUE INDEX key_rates_pkey ON public.key_rates USING btree (key_id)
index CREATE UNIQUE INDEX meta_pkey ON public.meta USING btree (name)
index CREATE UNIQUE INDEX request_text_pkey ON public.request_text USING btree (request_id, run, start)
index CREATE UNIQUE INDEX requests_id_key ON public.requests USING btree (id)
index CREATE UNIQUE INDEX requests_owner_idempotency ON public.requests USING btree (owner, idempotency_key) WHERE (idempotency_key IS NOT NULL)
index CREATE UNIQUE INDEX requests_pkey ON public.requests USING btree (seq)
index CREATE UNIQUE INDEX schema_migrations_pkey ON public.schema_migrations USING btree (version)
index CREATE UNIQUE INDEX usage_pkey ON public.usage USING btree (owner, day, model)
index CREATE UNIQUE INDEX webhook_attempts_pkey ON public.webhook_attempts USING btree (request_id, attempt)
index CREATE UNIQUE INDEX webhook_deliveries_pkey ON public.webhook_deliveries USING btree (id)
index CREATE UNIQUE INDEX webhook_deliveries_request_id_key ON public.webhook_deliveries USING btree (request_id)
index CREATE UNIQUE INDEX webhook_disabled_pkey ON public.webhook_disabled USING btree (owner, url)
index CREATE UNIQUE INDEX webhook_secrets_pkey ON public.webhook_secrets USING btree (owner)
trigger CREATE TRIGGER request_text_appended AFTER INSERT ON public.request_text FOR EACH ROW EXECUTE FUNCTION chatq_notify_text()
trigger CREATE TRIGGER requests_cancel_requested AFTER UPDATE OF cancel_requested_at ON public.requests FOR EACH ROW WHEN (((old.cancel_requested_at IS NULL) AND (new.cancel_requested_at IS NOT NULL))) EXECUTE FUNCTION chatq_notify_cancel()
trigger CREATE TRIGGER requests_status_changed AFTER UPDATE OF status, runs ON public.requests FOR EACH ROW WHEN (((old.status IS DISTINCT FROM new.status) OR (old.runs <> new.runs))) EXECUTE FUNCTION chatq_notify_status()
trigger CREATE TRIGGER requests_work_available AFTER INSERT OR UPDATE OF status ON public.requests FOR EACH ROW WHEN ((new.status = 'CREATED'::text)) EXECUTE FUNCTION chatq_notify_work()
trigger CREATE TRIGGER webhook_deliveries_added AFTER INSERT ON public.webhook_deliveries REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION chatq_notify_webhooks_added()
trigger CREATE TRIGGER webhook_delivery_due AFTER UPDATE OF status ON public.webhook_deliveries FOR EACH ROW WHEN ((new.status = 'PENDING'::text)) EXECUTE FUNCTION chatq_notify_webhook()
