"""The proxy: Django's app `routing` (models of the admin's store, migrations, checks, URLs and the
`routes` command at this level) over six layers, each a package that imports only from those below it
(`.importlinter`, checked by tests/test_layers.py):

    api        the views: model requests, model lists, copy/delete, health/ready/metrics, declared paths
    proxy      the one pipeline and relay, observers, metrics, pull, and the application's state
    dialects | lmstudio
               the four client dialects (pure translation) | LM Studio: client, catalog, backends, loading
    config | security
               the route table (data, loader, registry) | the head gate, hosts and origins, credentials
    core       errors, the exchange record, API paths, JSON responses
"""
