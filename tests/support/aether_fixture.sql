-- Copied from /work/shared/spec/aether-schema.md ("DDL fixture for tests").
-- libaethercache test fixture: the Aether tables/columns the library reads.
BEGIN;

DROP TABLE IF EXISTS usage, models, global_models, provider_api_keys,
                     provider_endpoints, providers, api_keys, users CASCADE;

CREATE TABLE users (
    id          varchar(36)  NOT NULL PRIMARY KEY,
    username    varchar(100) NOT NULL,
    email       varchar(255) NOT NULL,
    is_active   boolean      NOT NULL DEFAULT true,
    is_deleted  boolean      NOT NULL DEFAULT false
);
CREATE UNIQUE INDEX ix_users_username ON users (username);
CREATE UNIQUE INDEX ix_users_email    ON users (email);

CREATE TABLE api_keys (
    id             varchar(36)  NOT NULL PRIMARY KEY,
    user_id        varchar(36)  NOT NULL
                   REFERENCES users (id) ON DELETE CASCADE,
    name           varchar(100),
    key_encrypted  text,
    is_standalone  boolean      NOT NULL DEFAULT false,
    is_active      boolean      NOT NULL DEFAULT true
);

CREATE TABLE providers (
    id            varchar(36)  NOT NULL PRIMARY KEY,
    name          varchar(100) NOT NULL,
    display_name  varchar(100) NOT NULL,
    is_active     boolean      NOT NULL DEFAULT true
);
CREATE UNIQUE INDEX ix_providers_name ON providers (name);

CREATE TABLE provider_endpoints (
    id           varchar(36)  NOT NULL PRIMARY KEY,
    provider_id  varchar(36)  NOT NULL
                 REFERENCES providers (id) ON DELETE CASCADE,
    api_format   varchar(50)  NOT NULL,
    base_url     varchar(500) NOT NULL,
    is_active    boolean      NOT NULL DEFAULT true,
    CONSTRAINT uq_provider_api_format UNIQUE (provider_id, api_format)
);
CREATE INDEX idx_endpoint_format_active
    ON provider_endpoints (api_format, is_active);

CREATE TABLE provider_api_keys (
    id                 varchar(36)      NOT NULL PRIMARY KEY,
    endpoint_id        varchar(36)      NOT NULL
                       REFERENCES provider_endpoints (id) ON DELETE CASCADE,
    name               varchar(100)     NOT NULL,
    api_key            varchar(500)     NOT NULL,
    rate_multiplier    double precision NOT NULL DEFAULT 1.0,
    cache_ttl_minutes  integer          NOT NULL DEFAULT 5,
    is_active          boolean          NOT NULL DEFAULT true
);

CREATE TABLE global_models (
    id            varchar(36)  NOT NULL PRIMARY KEY,
    name          varchar(100) NOT NULL,
    display_name  varchar(100) NOT NULL,
    is_active     boolean      NOT NULL DEFAULT true
);
CREATE UNIQUE INDEX ix_global_models_name ON global_models (name);

CREATE TABLE models (
    id                       varchar(36)  NOT NULL PRIMARY KEY,
    provider_id              varchar(36)  NOT NULL REFERENCES providers (id),
    global_model_id          varchar(36)  NOT NULL REFERENCES global_models (id),
    provider_model_name      varchar(200) NOT NULL,
    provider_model_mappings  jsonb,
    is_active                boolean      NOT NULL DEFAULT true,
    CONSTRAINT uq_provider_model UNIQUE (provider_id, provider_model_name)
);
CREATE INDEX ix_models_global_model_id ON models (global_model_id);
CREATE INDEX idx_model_provider_model_name
    ON models (provider_model_name) WHERE is_active = true;
CREATE INDEX idx_model_provider_model_aliases_gin
    ON models USING gin (provider_model_mappings jsonb_path_ops)
    WHERE is_active = true;

CREATE TABLE usage (
    id                           varchar(36)      NOT NULL PRIMARY KEY,
    user_id                      varchar(36)
                                 REFERENCES users (id) ON DELETE SET NULL,
    api_key_id                   varchar(36)
                                 REFERENCES api_keys (id) ON DELETE SET NULL,
    model                        varchar(100)     NOT NULL,
    status                       varchar(20)      NOT NULL DEFAULT 'completed',
    input_tokens                 integer          DEFAULT 0,
    cache_creation_input_tokens  integer          DEFAULT 0,
    cache_read_input_tokens      integer          DEFAULT 0,
    cache_creation_cost_usd      double precision DEFAULT 0.0,
    cache_read_cost_usd          double precision DEFAULT 0.0,
    created_at                   timestamptz      NOT NULL DEFAULT now()
);
CREATE INDEX ix_usage_status          ON usage (status);
CREATE INDEX ix_usage_created_at      ON usage (created_at);
CREATE INDEX idx_usage_user_created   ON usage (user_id, created_at);
CREATE INDEX idx_usage_apikey_created ON usage (api_key_id, created_at);

COMMIT;
