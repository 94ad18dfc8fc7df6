from magpie.runtime.entrypoint import main
from services.catalog.server import NAME, build_spec

main(NAME, build_spec)
