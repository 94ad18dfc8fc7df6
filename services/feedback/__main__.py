from magpie.runtime.entrypoint import main
from services.feedback.server import NAME, build_spec

main(NAME, build_spec)
