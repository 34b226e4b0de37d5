"""Routines: read a JSON or YAML file, substitute ``${...}``, resolve locations, validate it whole.

``load`` turns a file (or a dict) into a validated :class:`Routine`; ``schema_check`` speaks
JSON Schema in the user's words; ``substitution`` resolves references and masks secrets;
``introspect`` derives schemas from executor signatures; ``schema_export`` prints the whole schema.
"""
