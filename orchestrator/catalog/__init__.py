"""A versioned routine catalog: publish a routine with every file it names, fetch it back verified.

Layout, in any store (a folder, ``s3://``, ``https://``)::

    <catalog>/<NAME>/<VERSION>/manifest.json     written last, never overwritten: the version exists
    <artifacts>/sha256/<hex>                     each file's content, addressed by its SHA-256

``refs`` parses ``NAME@VERSION``; ``bundle`` finds the files a routine names; ``stores`` reads and
writes the stores; ``catalog`` publishes and fetches; ``commands`` is the CLI's side.
"""
