# watchkeeper's fixtures for plugin authors: monitor_config, config_problems, run_check,
# send_notice (and the probe kit's http_server, tcp_server, certificates)
pytest_plugins = ["watchkeeper.engine.pytest_plugin"]
