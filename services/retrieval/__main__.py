from services.common.runtime import main
from services.retrieval.server import build_spec

main(build_spec)
