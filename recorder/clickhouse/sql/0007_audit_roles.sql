-- v7: the principal's roles on each audit row, next to the rule that decided.
-- They come from the auth hop's auth.roles attribute (recorder.AttrAuthRoles):
-- the roles a JWT's claims gave (auth.oauth.bindings); empty for a static
-- token and with authentication off.

-- mcptrail:if-missing-column {{name "audit"}} roles
ALTER TABLE {{tbl "audit"}}{{onCluster}} ADD COLUMN roles Array(String) AFTER rule;

-- Cluster: the Distributed table is created again with the new column.
{{redist "audit" "cityHash64(principal)"}}
