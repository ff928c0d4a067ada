from sst import create_app

app = create_app()
