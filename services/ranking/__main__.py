from services.common.runtime import main
from services.ranking.server import build_spec

main(build_spec)
