from services.catalog.server import build_spec
from services.common.runtime import main

main(build_spec)
