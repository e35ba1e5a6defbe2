"""The operations floor (STYLE.md): what runs MedStream at the hospital's edge and on
its machines. It may import the platform and the domain packages; nothing below it
imports it."""
