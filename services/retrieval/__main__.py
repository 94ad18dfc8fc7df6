from magpie.runtime.entrypoint import main
from services.retrieval.server import NAME, build_spec

main(NAME, build_spec)
