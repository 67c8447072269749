-- Function bodies written by earlier releases name the schema in a '...' literal with its quotes
-- doubled and its backslashes left as they are (0001, 0007 and 0008 put one in
-- list_complete_and_claim). A session with standard_conforming_strings = off compiles such a
-- body with every backslash read as an escape, so in a schema whose name holds a backslash the
-- function looks for another schema. The schema literal is now written as E'...' with both
-- escaped, which every session reads the same; this re-creates each function whose body still
-- has the old literal with the one quote_literal() gives (the same form). Other schema names
-- never needed it: there the two forms read the same, and nothing is done.
DO $$
DECLARE
  v_old text := '''' || replace({{schema_literal}}, '''', '''''') || '''';
  v_fn oid;
BEGIN
  IF strpos({{schema_literal}}, E'\\') = 0 THEN
    RETURN;
  END IF;
  FOR v_fn IN
    SELECT p.oid FROM pg_proc AS p
     WHERE p.pronamespace = to_regnamespace(quote_ident({{schema_literal}}))
       AND strpos(p.prosrc, v_old) > 0
  LOOP
    EXECUTE replace(pg_get_functiondef(v_fn), v_old, quote_literal({{schema_literal}}));
  END LOOP;
END
$$;
