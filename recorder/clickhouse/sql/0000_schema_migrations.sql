-- Bootstrap: the database and the table that records applied migrations.
CREATE DATABASE IF NOT EXISTS {{db}}{{onCluster}};

CREATE TABLE IF NOT EXISTS {{tbl "schema_migrations"}}{{onCluster}} (
    version UInt32,
    name String,
    checksum String,
    applied DateTime
) ENGINE = {{engine "ReplacingMergeTree" "schema_migrations"}}
ORDER BY version;
{{dist "schema_migrations" "rand()"}}
